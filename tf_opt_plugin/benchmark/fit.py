"""A whole fit() step of a small transformer encoder: ours vs Keras's optimizers.

For each optimizer pair (tf_opt_plugin class, the same-math keras.optimizers
class) this times, in one process on the CPU:

  * one training step as fit() runs it (`model.train_on_batch`: forward,
    backward, optimizer update), median over --steps after --warmup;
  * the optimizer update alone (`optimizer.apply` on the same model's
    gradients, in a tf.function, as fit() traces it);

and prints the end-to-end ratio (Keras step / our step) and the optimizer's
share of each step. Usage:

  python -m tf_opt_plugin.benchmark.fit [--steps N] [--warmup N] [--batch N]
                                        [--tiny] [--markdown PATH]
"""

import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import tf_opt_plugin as top  # noqa: E402
from tf_opt_plugin.benchmark import _timing  # noqa: E402

# The model: vocabulary, sequence length, width, heads, FFN width, layers.
FULL = dict(vocab=8000, seq=128, width=256, heads=4, ffn=1024, layers=2)
TINY = dict(vocab=500, seq=16, width=32, heads=2, ffn=64, layers=1)

PAIRS = [
    ("AdamW", lambda: top.AdamW(1e-3, weight_decay=0.01),
     lambda: keras.optimizers.AdamW(1e-3, weight_decay=0.01)),
    ("Adam", lambda: top.Adam(1e-3), lambda: keras.optimizers.Adam(1e-3)),
    # Weight decay 0: Keras's Lamb puts it outside the trust ratio.
    ("Lamb", lambda: top.Lamb(1e-3), lambda: keras.optimizers.Lamb(1e-3)),
    ("Adafactor", lambda: top.Adafactor(1e-3),
     lambda: keras.optimizers.Adafactor(1e-3)),
    ("Lion", lambda: top.Lion(1e-4, weight_decay=0.01),
     lambda: keras.optimizers.Lion(1e-4, weight_decay=0.01)),
    ("SGD", lambda: top.SGD(0.01, momentum=0.9),
     lambda: keras.optimizers.SGD(0.01, momentum=0.9)),
]


def encoder_block(x, dims):
  attention = keras.layers.MultiHeadAttention(dims["heads"],
                                              dims["width"] // dims["heads"])(x,
                                                                              x)
  x = keras.layers.LayerNormalization()(x + attention)
  hidden = keras.layers.Dense(dims["ffn"], activation="gelu")(x)
  return keras.layers.LayerNormalization()(x + keras.layers.Dense(dims["width"])
                                           (hidden))


def make_model(dims=None):
  """A transformer encoder classifier with `dims` (FULL by default), seed 0."""
  dims = FULL if dims is None else dims
  keras.utils.set_random_seed(0)
  tokens = keras.Input((dims["seq"],), dtype="int32")
  x = keras.layers.Embedding(dims["vocab"], dims["width"])(tokens)
  positions = keras.layers.Embedding(dims["seq"],
                                     dims["width"])(keras.ops.arange(
                                         dims["seq"], dtype="int32")[None, :])
  x = x + positions
  for _ in range(dims["layers"]):
    x = encoder_block(x, dims)
  x = keras.layers.GlobalAveragePooling1D()(x)
  return keras.Model(tokens, keras.layers.Dense(2)(x))


def median_ms(fn, steps, warmup):
  return 1e3 * _timing.median_seconds(fn, steps, warmup)


def measure(make_optimizer, batch, steps, warmup, dims=None):
  """(fit step ms, optimizer-only ms) for one optimizer on a fresh model."""
  dims = FULL if dims is None else dims
  model = make_model(dims)
  optimizer = make_optimizer()
  model.compile(
      optimizer=optimizer,
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  rng = np.random.default_rng(0)
  x = rng.integers(0, dims["vocab"], size=(batch, dims["seq"])).astype("int32")
  y = rng.integers(0, 2, size=(batch,)).astype("int32")

  def fit_step():
    model.train_on_batch(x, y)

  step_ms = median_ms(fit_step, steps, warmup)

  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_loss(x=x, y=y, y_pred=model(x)))
  grads = tape.gradient(loss, model.trainable_variables)

  @tf.function
  def apply_only():
    optimizer.apply(grads, model.trainable_variables)

  apply_ms = median_ms(apply_only, steps, warmup)
  return step_ms, apply_ms


def build_parser():
  parser = _timing.argument_parser("tf_opt_plugin.benchmark.fit", __doc__)
  _timing.add_step_arguments(parser, steps=20, warmup=3)
  parser.add_argument("--batch", type=_timing.positive_int, default=32,
                      help="batch size")
  parser.add_argument("--optimizers", default=",".join(p[0] for p in PAIRS),
                      help="comma list of the pairs to run (default: all)")
  parser.add_argument(
      "--tiny", action="store_true",
      help="a tiny model (for quick checks), not the benchmark's")
  return parser


def main(argv=None):
  """The command line: runs the benchmark, prints it, writes --markdown."""
  return _timing.main(build_parser(), run, argv)


def run(args):
  """Runs the fit() benchmark for parsed `args`; returns a report dict.

  Keys: "rows" ([(name, our step ms, Keras step ms, speed-up, our update ms, its
  share, Keras update ms, its share, update speed-up)]), "header", "markdown".
  """
  dims = TINY if args.tiny else FULL
  wanted = {n.strip().lower() for n in args.optimizers.split(",") if n.strip()}
  known = {p[0].lower() for p in PAIRS}
  if not wanted or wanted - known:
    raise SystemExit("--optimizers: choose from " +
                     ", ".join(p[0] for p in PAIRS))
  model = make_model(dims)
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  header = (
      f"fit() step of a {dims['layers']}-layer transformer encoder (width "
      f"{dims['width']}, {dims['heads']} heads, FFN {dims['ffn']}, vocab "
      f"{dims['vocab']}, sequence {dims['seq']}, batch "
      f"{args.batch}; {len(model.trainable_variables)} variables, "
      f"{params:,} parameters), median of {args.steps} steps after "
      f"{args.warmup} warm-up, CPU ({os.cpu_count()} cores), "
      f"TF {tf.__version__}, Keras {keras.__version__}, "
      f"Python {platform.python_version()}, load average at start "
      f"{os.getloadavg()[0]:.2f}")
  print(header, flush=True)
  rows = []
  for name, ours, theirs in PAIRS:
    if name.lower() not in wanted:
      continue
    our_step, our_apply = measure(ours, args.batch, args.steps, args.warmup,
                                  dims)
    keras_step, keras_apply = measure(theirs, args.batch, args.steps,
                                      args.warmup, dims)
    rows.append((name, our_step, keras_step, keras_step / our_step, our_apply,
                 our_apply / our_step, keras_apply, keras_apply / keras_step,
                 keras_apply / our_apply))
    print(
        f"  {name:10s} step ours {our_step:7.1f} ms  keras {keras_step:7.1f}"
        f" ms  (x{keras_step / our_step:.2f});  optimizer ours "
        f"{our_apply:6.1f} ms ({100 * our_apply / our_step:4.1f}%)  keras "
        f"{keras_apply:6.1f} ms ({100 * keras_apply / keras_step:4.1f}%)",
        flush=True)

  table = [
      "| optimizer | fit step, ours (ms) | fit step, Keras (ms) | "
      "end-to-end speed-up | update, ours (ms) | share of step | "
      "update, Keras (ms) | share of step | update speed-up |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  ]
  for (name, our_step, keras_step, speedup, our_apply, our_share, keras_apply,
       keras_share, apply_speedup) in rows:
    table.append(f"| {name} | {our_step:.1f} | {keras_step:.1f} | "
                 f"{speedup:.2f}x | {our_apply:.1f} | {100 * our_share:.0f}% | "
                 f"{keras_apply:.1f} | {100 * keras_share:.0f}% | "
                 f"{apply_speedup:.2f}x |")
  print("\n".join(table))
  load_end = os.getloadavg()[0]
  print(f"load average at end {load_end:.2f}")
  return {
      "rows": rows,
      "header": header,
      "load_average_end": load_end,
      "markdown": header + "\n\n" + "\n".join(table) + "\n"
  }


if __name__ == "__main__":
  sys.exit(main())
