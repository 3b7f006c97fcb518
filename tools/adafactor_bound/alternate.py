"""The fused Adafactor step over BERT-base against the same op with bare loops, in one process.

Needs an op library built with tools/adafactor_bound/bare_loops.patch (run.sh builds one), which
reads TFOPT_ADAFACTOR_BARE_LOOPS on every call:

  unset   the real kernel
  pass1   pass 1 is a bare sum of g^2 + w^2 over each band (no row, column or u^2 statistics)
  both    pass 2 is also bare: w -= 1e-9 * g over the same row blocks

Everything else -- variable lookup and locking, TF's thread pool, the band and row-block
partitioning, the column reduction, the 199 op launches -- is the real op's. Steps alternate
between the variants (ABC, CBA, ...) so that drifts in the machine's speed hit all of them, and
each median is divided by the Adafactor bytes floor measured in the same process, as
`python -m tf_opt_plugin.benchmark.ops` does. With a library built without the patch all three
rows run the real kernel (a smoke test of this script).

  python tools/adafactor_bound/alternate.py [--steps N] [--shapes bert-base|embedding|tiny]

`--shapes embedding` is BERT-base's largest variable alone (30522 x 768, a fifth of the model):
one op, so no per-op costs and every pass split among the threads in many bands.
"""

import argparse
import os
import statistics
import sys
import time

ENV = "TFOPT_ADAFACTOR_BARE_LOOPS"
VARIANTS = (("real", None), ("pass1", "pass1"), ("both", "both"))
EMBEDDING = [("embeddings/word_embeddings", (30522, 768))]


def _set_variant(value):
  if value is None:
    os.environ.pop(ENV, None)
  else:
    os.environ[ENV] = value


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
  parser.add_argument("--shapes", choices=("bert-base", "embedding", "tiny"),
                      default="bert-base")
  parser.add_argument("--floor-mib", type=int, default=1024,
                      help="buffer size of the bandwidth measurement")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error("`--steps` must be at least 1. Received: --steps=%d" % args.steps)

  from tf_opt_plugin.benchmark import ops as bench  # noqa: PLC0415 (sets TF's log level first)
  plugin, reason = bench.import_plugin()
  if plugin is None:
    sys.exit("the op library cannot be loaded: %s" % reason)
  shapes = EMBEDDING if args.shapes == "embedding" else bench.SHAPE_SETS[args.shapes]
  variables = bench.make_tf_variables(shapes)
  grads = bench.make_gradients(shapes)
  step, _ = bench.build_fused_adafactor(plugin, variables, grads)

  for _, value in VARIANTS:  # trace once, warm every variant
    _set_variant(value)
    step()
    step()
  times = {name: [] for name, _ in VARIANTS}
  for i in range(args.steps):
    for name, value in (VARIANTS if i % 2 == 0 else VARIANTS[::-1]):
      _set_variant(value)
      t0 = time.perf_counter()
      step()
      times[name].append(time.perf_counter() - t0)
  _set_variant(None)

  bandwidth, _ = bench.measure_bandwidth(mib=args.floor_mib)
  floor, moved = bench.floor_seconds("adafactor", shapes, bandwidth)
  print("Adafactor step over %s (%d variables), %d steps per variant, alternating" % (
      args.shapes, len(shapes), args.steps))
  print("bytes floor: %.2f GB at %.1f GB/s = %.1f ms" % (moved / 1e9, bandwidth / 1e9,
                                                          floor * 1e3))
  print("%-7s %10s %10s %8s" % ("variant", "median ms", "min ms", "x floor"))
  for name, _ in VARIANTS:
    median = statistics.median(times[name])
    print("%-7s %10.2f %10.2f %8.2f" % (name, median * 1e3, min(times[name]) * 1e3,
                                        median / floor))
  return 0


if __name__ == "__main__":
  sys.exit(main())
