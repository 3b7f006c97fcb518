"""What the benchmarks share: timing calls, and their command lines."""

import argparse
import statistics
import time


def seconds(fn):
  """The wall-clock seconds of one call of `fn`."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def call_times(fn, steps, warmup):
  """`(first, times)`: the seconds of the first call of `fn` (it traces, and
  compiles under XLA), then those of `steps` calls after `warmup` - 1 more
  untimed ones."""
  first = seconds(fn)
  for _ in range(max(warmup - 1, 0)):
    fn()
  return first, [seconds(fn) for _ in range(steps)]


def median_seconds(fn, steps, warmup):
  """The median seconds of `steps` calls of `fn` after `warmup` (at least
  one, the first) untimed ones."""
  return statistics.median(call_times(fn, steps, warmup)[1])


def argument_parser(module, doc):
  """The parser of `python -m module`, described by `doc`'s first paragraph;
  --help shows each option's default."""
  return argparse.ArgumentParser(
      prog="python -m " + module,
      description=doc.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_step_arguments(parser, steps, warmup, prefix=""):
  """--steps and --warmup (--{prefix}steps, --{prefix}warmup)."""
  parser.add_argument(f"--{prefix}steps",
                      type=int,
                      default=steps,
                      help="timed calls per measurement")
  parser.add_argument(f"--{prefix}warmup",
                      type=int,
                      default=warmup,
                      help="untimed calls first, the first of which traces")
