"""Every fused op fails cleanly when memory runs out.

A child process (`tests/support/memory_pressure_worker.py`) caps its own
address space (RLIMIT_AS) at what it uses plus 32 MiB, after TensorFlow and
the variables exist and a small step of the op has run, then asks each op
for one allocation larger than that: a copy of a 64 MiB variable whose
buffer a read still holds (AdamW, LAMB, Lion, and the multi-tensor ops with
the large variable last), or Adafactor's factored scratch for a 1 x 16M
variable (three buffers of its column count). Each must raise
ResourceExhaustedError, leave every variable and slot byte for byte as it
was, and not kill the process. Two controls run under the same cap and must
update: without them a cap that broke everything would pass.
"""

import json
import subprocess

import pytest

import subprocess_helpers

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

EXHAUSTED = (
    "adamw",
    "lamb",
    "lion",
    "adafactor_wide",
    "multi_tensor_adamw",
    "multi_tensor_lamb",
    "multi_tensor_lion",
)
CONTROLS = ("multi_tensor_adamw_small", "adafactor_small")
TIMEOUT_S = 600


def _run_worker(names):
  """{scenario: result} for `names`; a scenario whose START line is not
  followed by its result crashed the worker."""
  process = subprocess.run(
      subprocess_helpers.command("memory_pressure_worker.py", *names),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
      env=subprocess_helpers.environment(),
  )
  results, started = {}, None
  for line in process.stdout.splitlines():
    if line.startswith("START "):
      started = line.split(" ", 1)[1]
    elif line.startswith(subprocess_helpers.RESULT_PREFIX):
      result = json.loads(line[len(subprocess_helpers.RESULT_PREFIX):])
      results[result["scenario"]] = result
      started = None
  if started is not None:
    results[started] = {
        "scenario": started,
        "outcome": "crash",
        "returncode": process.returncode,
        "message": subprocess_helpers.tail(process.stderr),
    }
  elif process.returncode != 0:
    raise RuntimeError(
        f"memory_pressure_worker.py exited with {process.returncode}:\n" +
        subprocess_helpers.tail(process.stderr))
  return results


@pytest.fixture(scope="module")
def results():
  """All scenarios, one worker process; after a crash, a new worker runs the
  scenarios that had not run."""
  names = list(EXHAUSTED + CONTROLS)
  found = {}
  while names:
    batch = _run_worker(names)
    found.update(batch)
    names = [n for n in names if n not in found]
    if names and not batch:
      raise RuntimeError(f"no result for {names}")
  return found


@pytest.mark.parametrize("scenario", EXHAUSTED)
def test_running_out_of_memory_is_a_clean_error(results, scenario):
  result = results[scenario]
  assert result["outcome"] != "crash", (
      f"the process died (returncode {result['returncode']}):\n"
      f"{result['message']}")
  assert result["outcome"] == "error", (
      "the update ran under the cap: the test no longer exhausts memory")
  assert result["type"] == "ResourceExhaustedError", result
  assert "OOM" in result["message"], result["message"]
  assert result["changed"] == [], (
      f"{result['changed']} changed although the update raised")


@pytest.mark.parametrize("scenario", CONTROLS)
def test_a_small_update_runs_under_the_same_cap(results, scenario):
  result = results[scenario]
  assert result["outcome"] == "ok", result
  assert result["changed"], "the update wrote nothing"
