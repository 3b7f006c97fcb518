"""The first step under XLA with many small variables: ours vs Keras's AdamW.

`python -m tf_opt_plugin.benchmark.xla_compile [--variables 1000,3000]
[--rounds 1] [--count-ops]`

Under `jit_compile=True` the custom ops cannot run and every variable is
updated by the pure-TensorFlow twin, which XLA compiles. For each N of
--variables: N float32 Keras variables of shape (4, 3) and one
`tf.function(jit_compile=True)` around `optimizer.apply_gradients`, whose first
call traces the function (Python builds the graph) and compiles it (XLA).
Timed for `tf_opt_plugin.AdamW` and `keras.optimizers.AdamW` (weight_decay
0.01), alternating --rounds times in this process on fresh variables (the very
first run also warms TensorFlow up); the table gives the best of the rounds and
ours / Keras (below 1: ours compiles faster). --count-ops also gives the graph
operations and HLO instructions per variable (each costs one more
compilation: use a small N). `python -m tf_opt_plugin.benchmark
--xla-compile` runs it too (docs/benchmarks.md).
"""

import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from tf_opt_plugin.benchmark import _machine  # noqa: E402
from tf_opt_plugin.benchmark import _timing  # noqa: E402

SHAPE = (4, 3)
SIDES = ("ours", "keras")


def make_step(side, count):
  """(step function, its tf.function) over `count` fresh variables."""
  import tf_opt_plugin as top  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(count)
  variables = [
      keras.Variable(rng.normal(size=SHAPE).astype("float32"), name=f"w{i}")
      for i in range(count)
  ]
  grads = [
      tf.constant(rng.normal(size=SHAPE).astype("float32"))
      for _ in range(count)
  ]
  cls = top.AdamW if side == "ours" else keras.optimizers.AdamW
  optimizer = cls(learning_rate=1e-3, weight_decay=0.01)
  optimizer.build(variables)
  function = tf.function(
      lambda: optimizer.apply_gradients(zip(grads, variables)),
      jit_compile=True)
  return function


def first_step(side, count):
  """{"trace", "compile"}: seconds to trace, then to compile and run once."""
  function = make_step(side, count)
  start = time.perf_counter()
  function.get_concrete_function()
  traced = time.perf_counter()
  function()
  done = time.perf_counter()
  return {"trace": traced - start, "compile": done - traced}


def count_ops(side, count):
  """(graph operations, HLO instructions) per variable."""
  function = make_step(side, count)
  graph_ops = len(function.get_concrete_function().graph.get_operations())
  hlo = function.experimental_get_compiler_ir()(stage="hlo")
  instructions = sum(1 for line in hlo.splitlines()
                     if re.search(r"^\s*(ROOT )?%?\S+ = ", line))
  return graph_ops / count, instructions / count


def build_parser():
  parser = _timing.argument_parser("tf_opt_plugin.benchmark.xla_compile",
                                   __doc__)
  _timing.add_counts_argument(parser, "--variables", "1000,3000", "the Ns")
  parser.add_argument(
      "--rounds", type=_timing.positive_int, default=1,
      help="ours / Keras pairs per N; the best of each is reported")
  parser.add_argument(
      "--count-ops",
      action="store_true",
      help="also count graph operations and HLO instructions per variable",
  )
  return parser


def measure(count, rounds, with_counts):
  """{"n", "ours", "keras", "counts"}: the best first step of `rounds` of
  each side ({"trace", "compile", "total"} seconds) and, `with_counts`,
  {side: (graph operations, HLO instructions) per variable}."""
  row = {"n": count, "counts": None}
  for _ in range(rounds):
    for side in SIDES:
      times = first_step(side, count)
      times["total"] = times["trace"] + times["compile"]
      if side not in row or times["total"] < row[side]["total"]:
        row[side] = times
  if with_counts:
    row["counts"] = {side: count_ops(side, count) for side in SIDES}
  return row


def format_table(rows):
  """The rows as markdown lines."""
  lines = [
      "| variables | ours: trace + compile (s) | Keras: trace + compile (s) "
      "| ours / Keras | graph ops per variable (ours, Keras) "
      "| HLO instructions per variable (ours, Keras) |",
      "|---:|---:|---:|---:|---:|---:|",
  ]
  for row in rows:
    cells = ["%d" % row["n"]]
    cells += [
        "%.1f + %.1f = %.1f" %
        (row[side]["trace"], row[side]["compile"], row[side]["total"])
        for side in SIDES
    ]
    cells.append("%.2f" % (row["ours"]["total"] / row["keras"]["total"]))
    for k in (0, 1):
      cells.append("-" if row["counts"] is None else "%.1f, %.1f" %
                   tuple(row["counts"][side][k] for side in SIDES))
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def run(args, log=None):
  """Runs the comparison for parsed `args`; returns {"rows", "markdown"}."""
  if log is None:

    def log(msg=""):
      print(msg, flush=True)

  load_before = _machine.load_average()
  title = ("First step under jit_compile=True: tf_opt_plugin.AdamW vs "
           "keras.optimizers.AdamW, N variables of shape %s" % (SHAPE,))
  log(title)
  log("  load average at start %s" % load_before)
  rows = []
  for count in args.variables:
    row = measure(count, args.rounds, args.count_ops)
    rows.append(row)
    log("  N=%d: ours %.1f s, Keras %.1f s" %
        (count, row["ours"]["total"], row["keras"]["total"]))
  load_after = _machine.load_average()
  table = format_table(rows)
  log()
  for line in table:
    log(line)
  log("load average at start %s, at end %s" % (load_before, load_after))
  markdown = "\n".join(["# " + title, ""] + table + [
      "",
      "Best of %d round(s) per side; load average at start %s, at end %s." %
      (args.rounds, load_before, load_after)
  ]) + "\n"
  return {"rows": rows, "markdown": markdown}


def main(argv=None):
  return _timing.main(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
