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


def positive_int(text):
  """An integer >= 1 (an argparse type)."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1. Received: {text}")
  return value


def counts(text):
  """Comma-separated integers >= 1, as a list (an argparse type)."""
  return [positive_int(c) for c in text.split(",") if c.strip()]


def argument_parser(module, doc):
  """The parser of `python -m module`, described by `doc`'s first paragraph;
  --help shows each option's default."""
  return argparse.ArgumentParser(
      prog="python -m " + module, description=doc.split("\n\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_counts_argument(parser, flag, default, help_text):
  """Option `flag`: numbers of variables, comma-separated (a list of ints)."""
  parser.add_argument(
      flag, type=counts, default=default,
      help=help_text + " (numbers of variables, "
      "comma-separated)")


def add_step_arguments(parser, steps, warmup, prefix=""):
  """--steps and --warmup (--{prefix}steps, --{prefix}warmup)."""
  parser.add_argument(f"--{prefix}steps", type=positive_int, default=steps,
                      help="timed calls per measurement")
  parser.add_argument(f"--{prefix}warmup", type=positive_int, default=warmup,
                      help="untimed calls first, the first of which traces")


def table_lines(header, body, markdown):
  """Rows of cells (strings) under `header` as lines: a markdown table, or
  right-aligned columns for the terminal."""
  if markdown:
    return ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)
           ] + ["| " + " | ".join(cells) + " |" for cells in body]
  widths = [
      max([len(h)] + [len(c[i]) for c in body]) for i, h in enumerate(header)
  ]
  return ["  ".join(h.rjust(w) for h, w in zip(header, widths))] + [
      "  ".join(c.rjust(w) for c, w in zip(cells, widths)) for cells in body
  ]


def main(parser, run, argv=None):
  """A benchmark's command line: `run(args)`, then its report's markdown
  written to --markdown if given (the option `parser` gets here)."""
  parser.add_argument("--markdown", metavar="PATH",
                      help="also write the report as markdown")
  args = parser.parse_args(argv)
  report = run(args)
  if args.markdown:
    with open(args.markdown, "w") as f:
      f.write(report["markdown"])
    print("markdown written to %s" % args.markdown, flush=True)
  return 0
