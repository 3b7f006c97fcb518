"""Facts about the machine, for the reports of the demo and the benchmarks."""

import os
import platform


def cpu_description(flags=()):
  """The CPU's model name, followed by those of `flags` it supports.

  Read from /proc/cpuinfo where there is one, else the platform's processor
  string: e.g. "Intel(R) Xeon(R) Processor (avx2 avx512f)".
  """
  name = platform.processor() or platform.machine() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return name
  for line in text.splitlines():
    if line.startswith("model name"):
      name = line.split(":", 1)[1].strip()
      break
  present = [flag for flag in flags if f" {flag} " in text]
  return f"{name} ({' '.join(present)})" if present else name


def load_average(periods=3):
  """The 1-, 5- and 15-minute load averages (the first `periods`), as text.

  "n/a" where the platform has none. On a small machine these say whether a
  timing shared the cores with other work.
  """
  try:
    return " ".join("%.2f" % x for x in os.getloadavg()[:periods])
  except OSError:
    return "n/a"
