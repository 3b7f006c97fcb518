"""The memory of optimizer state for the BERT-base variable set: float32 vs bfloat16 vs 8-bit.

`python -m tf_opt_plugin.benchmark.state_memory [--shapes bert-base|tiny] [--markdown PATH]`

Builds `tf_opt_plugin.AdamW(state_dtype=...)` (the Keras 3 class) on float32 variables of
the chosen shapes and adds up the bytes of the slot variables it really creates: every
variable in `optimizer.variables` but the step count and the learning rate, each counted as
its number of elements times its dtype's size.  Nothing is estimated: the 8-bit rows include
the float32 absmax of every block of 256 elements and the float32 state that variables under
4096 elements keep (as bitsandbytes).  AdamW has two slots (m, v), so float32 state is
8 bytes per parameter, bfloat16 4 and 8-bit about 2 + 8 / 256.
"""

import gc
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tf_opt_plugin.benchmark import _timing  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import BERT_BASE_SHAPES  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import num_params  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import TINY_SHAPES  # noqa: E402

SHAPE_SETS = {"bert-base": BERT_BASE_SHAPES, "tiny": TINY_SHAPES}
STATE_DTYPES = ("float32", "bfloat16", "int8")
# The bound for 8-bit state, absmax included (bfloat16 is exactly half).
INT8_MAX_RATIO = 0.27


def state_variables(optimizer):
  """The optimizer's state: `optimizer.variables` without the step count and the
  learning rate (the two variables every Keras 3 optimizer has before its slots)."""
  skip = {id(optimizer.iterations)}
  learning_rate = getattr(optimizer, "_learning_rate", None)
  if learning_rate is not None:
    skip.add(id(learning_rate))
  return [v for v in optimizer.variables if id(v) not in skip]


def measure(shapes, state_dtypes=STATE_DTYPES):
  """[{"state_dtype", "bytes", "by_dtype": {dtype name: bytes}, "variables"}] for AdamW
  built with each `state_dtypes` entry on float32 variables of `shapes`."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_opt_plugin.optimizers import keras3  # pylint: disable=g-import-not-at-top
  model_variables = [
      keras.Variable(keras.ops.zeros(shape, "float32"),
                     name=name.replace("/", "_")) for name, shape in shapes
  ]
  rows = []
  for state_dtype in state_dtypes:
    optimizer = keras3.AdamW(learning_rate=1e-3, weight_decay=0.01,
                             state_dtype=state_dtype)
    optimizer.build(model_variables)
    by_dtype = {}
    state = state_variables(optimizer)
    for v in state:
      dtype = tf.as_dtype(v.dtype)
      size = math.prod(v.shape) * dtype.size
      by_dtype[dtype.name] = by_dtype.get(dtype.name, 0) + size
    rows.append({
        "state_dtype": state_dtype,
        "bytes": sum(by_dtype.values()),
        "by_dtype": by_dtype,
        "variables": len(state)
    })
    del optimizer, state
    gc.collect()
  del model_variables
  gc.collect()
  return rows


def format_table(rows, params, markdown):
  """The table's lines: bytes, MiB, bytes per parameter and the ratio to float32."""
  base = next((r["bytes"] for r in rows if r["state_dtype"] == "float32"), None)
  head = ("AdamW state_dtype", "state variables", "bytes", "MiB",
          "bytes / parameter", "x float32", "of which")
  if markdown:
    lines = ["| %s |" % " | ".join(head), "|---|---:|---:|---:|---:|---:|---|"]
  else:
    lines = ["%-18s %15s %12s %9s %17s %9s  %s" % head, "-" * 110]
  for r in rows:
    cells = [
        r["state_dtype"],
        str(r["variables"]), "{:,}".format(r["bytes"]),
        "%.1f" % (r["bytes"] / 2**20),
        "%.3f" % (r["bytes"] / params),
        "%.3f" % (r["bytes"] / base) if base else "-",
        ", ".join("%s %.1f MiB" % (d, b / 2**20)
                  for d, b in sorted(r["by_dtype"].items()))
    ]
    if markdown:
      lines.append("| %s |" % " | ".join(cells))
    else:
      lines.append("%-18s %15s %12s %9s %17s %9s  %s" % tuple(cells))
  return lines


def ratios(rows):
  """{state_dtype: bytes / float32 bytes}."""
  base = next(r["bytes"] for r in rows if r["state_dtype"] == "float32")
  return {r["state_dtype"]: r["bytes"] / base for r in rows}


def run(args, log=print):
  """Measures and prints the table; returns {"rows", "ratios", "markdown"}."""
  shapes = SHAPE_SETS[args.shapes]
  params = num_params(shapes)
  rows = measure(shapes)
  found = ratios(rows)
  title = (f"Optimizer state of tf_opt_plugin.AdamW over {args.shapes} "
           f"({len(shapes)} float32 variables, {params:,} parameters), "
           "summed over the slot variables it builds")
  verdict = ("PASS" if found.get("int8", 1.0) <= INT8_MAX_RATIO else "FAIL")
  note = (
      f"8-bit state / float32 state = {found.get('int8', float('nan')):.3f} "
      f"(target <= {INT8_MAX_RATIO}, absmax included): {verdict}. "
      "Variables under 4096 elements keep float32 state under int8.")
  log(title + ":")
  for line in format_table(rows, params, markdown=False):
    log("  " + line)
  log("  " + note)
  markdown = "\n".join(["# Optimizer state memory", "", title + ".", ""] +
                       format_table(rows, params, markdown=True) +
                       ["", note, ""])
  return {"rows": rows, "ratios": found, "markdown": markdown}


def build_parser():
  parser = _timing.argument_parser("tf_opt_plugin.benchmark.state_memory",
                                   __doc__)
  parser.add_argument("--shapes", choices=sorted(SHAPE_SETS),
                      default="bert-base", help="the variable set")
  return parser


def main(argv=None):
  """The command line: measures, prints, writes --markdown."""
  return _timing.main(build_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
