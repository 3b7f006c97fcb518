"""Train a small language model with our optimizers and with Keras's, side by side.

A byte-level causal transformer language model learns to predict the next character
of Python's own standard-library sources (read from this interpreter's installation,
so nothing is downloaded). It is trained with `model.fit()` once with each chosen
tf_opt_plugin optimizer and once with its `keras.optimizers` counterpart: the same
model, initial weights, batches, hyperparameters and number of steps. AdamW and Lamb
also train with their state stored in bfloat16 and in 8 bits (`state_dtype`, issue
16; Keras has no such option). Then it prints a table (the bytes of optimizer state,
median time per step, time of the first step, held-out loss and accuracy, the ratio
to Keras, the held-out loss against float32 state) and writes, into the output
folder:

  results.md    the table as markdown, with the settings and the machine
  results.json  every number, including the per-step losses and times
  demo.png      the training-loss curves and a bar chart of the step times

Run it with `python -m tf_opt_plugin.demo` (or `tf-opt-plugin-demo`); the plot needs
matplotlib (`pip install "tf_opt_plugin[demo]"`). `--help` lists the flags.
"""

import argparse
import glob
import json
import math
import os
import platform
import statistics
import sys
import time

from tf_opt_plugin.benchmark import _machine
from tf_opt_plugin.benchmark import _plotting

OPTIMIZERS = ("sgd", "adam", "adamw", "lamb", "adafactor")

# Each pair: (label, tf_opt_plugin class name, keras.optimizers class name, kwargs).
# The kwargs are passed unchanged to both classes and mean the same update on both
# sides (see docs/semantics.md). Lamb runs without weight decay because Keras's
# Lamb applies it outside the trust ratio; Adafactor with relative_step=True, the
# only step Keras 3 implements.
PAIRS = {
    "sgd": ("SGD", "SGD", dict(learning_rate=0.03, momentum=0.9)),
    "adam": ("Adam", "Adam", dict(learning_rate=1e-3)),
    "adamw": ("AdamW", "AdamW", dict(learning_rate=1e-3, weight_decay=0.01)),
    "lamb": ("Lamb", "Lamb", dict(learning_rate=5e-3, epsilon=1e-6)),
    "adafactor": ("Adafactor", "Adafactor", dict(learning_rate=1e-2)),
}

VOCAB = 128  # ASCII; every other byte becomes 0

# The optimizers that also train with reduced-precision state (`--state-dtypes`).
STATE_OPTIMIZERS = ("adamw", "lamb")
STATE_DTYPES = ("bfloat16", "int8")


# ------------------------------------------------------------------------------------
# Data: the text of the standard library's top-level modules.
# ------------------------------------------------------------------------------------
def stdlib_text(max_bytes=None):
  """(training bytes, held-out bytes) from the standard library's *.py files.

  Files are taken in sorted name order; every tenth file is held out. The text
  is mapped to ASCII codes 0-127 (other bytes become 0).

  >>> train, held_out = stdlib_text(max_bytes=200_000)
  >>> train.dtype, int(train.max()) < 128, len(held_out) > 0
  (dtype('int32'), True, True)
  """
  import sysconfig  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  root = sysconfig.get_paths()["stdlib"]
  files = sorted(glob.glob(os.path.join(root, "*.py")))
  if len(files) < 10:
    raise SystemExit(f"found only {len(files)} Python files in {root}")
  parts = ([], [])
  sizes = [0, 0]
  for i, path in enumerate(files):
    which = 1 if i % 10 == 9 else 0
    if max_bytes is not None and sizes[which] >= max_bytes * (0.1 if which else
                                                              0.9):
      continue
    with open(path, "rb") as f:
      data = f.read()
    parts[which].append(data)
    sizes[which] += len(data)

  def encode(chunks):
    raw = np.frombuffer(b"\n".join(chunks), np.uint8)
    return np.where(raw < VOCAB, raw, 0).astype("int32")

  return encode(parts[0]), encode(parts[1])


def windows(text, count, seq_len, seed):
  """`count` random (input, next-character target) windows of `seq_len`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  starts = rng.integers(0, len(text) - seq_len - 1, size=count)
  offsets = np.arange(seq_len)
  x = text[starts[:, None] + offsets]
  y = text[starts[:, None] + offsets + 1]
  return x, y


# ------------------------------------------------------------------------------------
# Model.
# ------------------------------------------------------------------------------------
def make_model(seq_len, width, layers, heads, seed):
  """A byte-level causal transformer LM; the same initial weights for a seed."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  tokens = keras.Input((seq_len,), dtype="int32")
  x = keras.layers.Embedding(VOCAB, width, name="token_embedding")(tokens)
  positions = keras.layers.Embedding(seq_len, width, name="position_embedding")(
      keras.ops.arange(seq_len, dtype="int32")[None, :])
  x = x + positions
  for i in range(layers):
    attention = keras.layers.MultiHeadAttention(
        heads, width // heads, name=f"attention_{i}")(x, x,
                                                      use_causal_mask=True)
    x = keras.layers.LayerNormalization(name=f"layer_norm_{i}a")(x + attention)
    hidden = keras.layers.Dense(4 * width, activation="gelu",
                                name=f"ffn_{i}a")(x)
    x = keras.layers.LayerNormalization(name=f"layer_norm_{i}b")(
        x + keras.layers.Dense(width, name=f"ffn_{i}b")(hidden))
  logits = keras.layers.Dense(VOCAB, name="logits")(x)
  return keras.Model(tokens, logits, name="byte_lm")


# ------------------------------------------------------------------------------------
# One training run.
# ------------------------------------------------------------------------------------
class _Recorder:
  """Keras callback (built lazily): per-step wall time and loss, and a progress bar."""

  @staticmethod
  def make(label, steps, show):
    import keras  # pylint: disable=g-import-not-at-top

    class Recorder(keras.callbacks.Callback):

      def __init__(self):
        super().__init__()
        self.times, self.losses = [], []
        self._mean_before = 0.0
        self._tty = show and sys.stdout.isatty()
        self._show = show

      def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

      def on_train_batch_end(self, batch, logs=None):
        mean = float(logs["loss"])  # waits for the step to finish
        self.times.append(time.perf_counter() - self._start)
        k = len(self.losses) + 1
        # Keras reports the running mean of the epoch; recover this step's loss.
        self.losses.append(k * mean - (k - 1) * self._mean_before)
        self._mean_before = mean
        if self._show:
          self._progress(k, mean)

      def _progress(self, k, mean):
        if not self._tty and k not in (steps, max(1, steps // 2)):
          return
        width = 24
        done = int(width * k / steps)
        recent = self.times[1:][-20:] or self.times
        line = (f"  {label:<36s} [{'#' * done}{'.' * (width - done)}] "
                f"{k:>5d}/{steps} loss {mean:6.3f} "
                f"{1e3 * statistics.median(recent):6.1f} ms/step")
        if self._tty:
          print("\r" + line, end="\n" if k == steps else "", flush=True)
        else:
          print(line, flush=True)

    return Recorder()


def state_bytes(optimizer):
  """The bytes of `optimizer`'s state: its variables but the step count and the
  learning rate, each counted as elements times its dtype's size."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_opt_plugin.benchmark import state_memory  # pylint: disable=g-import-not-at-top
  return sum(
      math.prod(v.shape) * tf.as_dtype(v.dtype).size
      for v in state_memory.state_variables(optimizer))


def train_one(side, key, data, args, state_dtype=None):
  """Trains a fresh model with one optimizer (ours with `state_dtype`); returns its
  measurements."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  ours_name, keras_name, kwargs = PAIRS[key]
  if side == "ours":
    # The Keras 3 classes even under TF_USE_LEGACY_KERAS=1, since the model is a Keras 3 model.
    from tf_opt_plugin.optimizers import keras3  # pylint: disable=g-import-not-at-top
    if state_dtype is None:
      optimizer = getattr(keras3, ours_name)(**kwargs)
      label = f"tf_opt_plugin.{ours_name}"
    else:
      optimizer = getattr(keras3, ours_name)(state_dtype=state_dtype, **kwargs)
      label = f"tf_opt_plugin.{ours_name}, {state_dtype} state"
  else:
    optimizer = getattr(keras.optimizers, keras_name)(**kwargs)
    label = f"keras {keras_name}"
  model = make_model(args.seq_len, args.width, args.layers, args.heads,
                     args.seed)
  model.compile(
      optimizer=optimizer,
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=["accuracy"])
  recorder = _Recorder.make(label, args.steps, not args.quiet)
  x, y, x_eval, y_eval = data
  start = time.perf_counter()
  model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False,
            verbose=0, callbacks=[recorder])
  train_s = time.perf_counter() - start
  eval_loss, eval_accuracy = model.evaluate(x_eval, y_eval,
                                            batch_size=args.batch_size,
                                            verbose=0)
  timed = recorder.times[args.skip_steps:] or recorder.times[-1:]
  return {
      "side":
          side,
      "optimizer":
          key,
      "state_dtype":
          state_dtype,
      "label":
          label,
      "state_bytes":
          state_bytes(optimizer),
      "step_ms":
          1e3 * statistics.median(timed),
      "first_step_s":
          recorder.times[0],
      "train_s":
          train_s,
      "losses": [float(v) for v in recorder.losses],
      "step_times_ms": [1e3 * t for t in recorder.times],
      "eval_loss":
          float(eval_loss),
      "eval_accuracy":
          float(eval_accuracy),
      "finite":
          bool(np.all(np.isfinite(recorder.losses)) and np.isfinite(eval_loss)),
  }


def _warm_up(data, args):
  """A few untimed steps first, so one-time process costs (thread pools, oneDNN
  kernels) do not land on whichever run comes first."""
  import keras  # pylint: disable=g-import-not-at-top
  model = make_model(args.seq_len, args.width, args.layers, args.heads,
                     args.seed)
  model.compile(
      optimizer=keras.optimizers.SGD(0.0),
      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  n = 3 * args.batch_size
  model.fit(data[0][:n], data[1][:n], batch_size=args.batch_size, verbose=0)


# ------------------------------------------------------------------------------------
# Report.
# ------------------------------------------------------------------------------------
COLUMNS = ("optimizer", "state KiB ours", "state KiB Keras", "ms/step ours",
           "ms/step Keras", "speed-up", "1st step ours (s)",
           "1st step Keras (s)", "held-out loss ours", "held-out loss Keras",
           "held-out acc ours", "held-out acc Keras", "loss vs float32 state")


def state_side(state_dtype):
  """The `runs` key side of our optimizer with `state_dtype` state."""
  return f"ours:{state_dtype}"


def table_rows(runs):
  """One row of strings per optimizer with both sides present (COLUMNS order),
  then one per reduced state dtype it ran with: its Keras columns empty (Keras
  has no reduced-precision state), its held-out loss relative to our run with
  float32 state."""
  rows = []
  for key in OPTIMIZERS:
    ours = runs.get((key, "ours"))
    theirs = runs.get((key, "keras"))
    if ours is None or theirs is None:
      continue
    rows.append([
        PAIRS[key][0], f"{ours['state_bytes'] / 1024:.0f}",
        f"{theirs['state_bytes'] / 1024:.0f}", f"{ours['step_ms']:.1f}",
        f"{theirs['step_ms']:.1f}",
        f"{theirs['step_ms'] / ours['step_ms']:.2f}x",
        f"{ours['first_step_s']:.1f}", f"{theirs['first_step_s']:.1f}",
        f"{ours['eval_loss']:.3f}", f"{theirs['eval_loss']:.3f}",
        f"{ours['eval_accuracy']:.3f}", f"{theirs['eval_accuracy']:.3f}", ""
    ])
    for state_dtype in STATE_DTYPES:
      run = runs.get((key, state_side(state_dtype)))
      if run is None:
        continue
      change = run["eval_loss"] / ours["eval_loss"] - 1
      rows.append([
          f"{PAIRS[key][0]}, {state_dtype} state",
          f"{run['state_bytes'] / 1024:.0f}", "-", f"{run['step_ms']:.1f}", "-",
          "-", f"{run['first_step_s']:.1f}", "-", f"{run['eval_loss']:.3f}",
          "-", f"{run['eval_accuracy']:.3f}", "-", f"{100 * change:+.1f}%"
      ])
  return rows


def format_text_table(rows):
  widths = [
      max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)
  ]
  line = lambda cells: "  ".join(  # noqa: E731
      c.ljust(w) if i == 0 else c.rjust(w)
      for i, (c, w) in enumerate(zip(cells, widths)))
  return "\n".join([line(COLUMNS), "  ".join("-" * w for w in widths)] +
                   [line(r) for r in rows])


def format_markdown_table(rows):
  out = [
      "| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)
  ]
  out += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(out)


def smooth(values, weight=0.9):
  """Exponential moving average, bias-corrected (as TensorBoard draws curves).

  >>> [round(v, 3) for v in smooth([1.0, 1.0, 4.0], weight=0.5)]
  [1.0, 1.0, 2.714]
  """
  out, average = [], 0.0
  for i, v in enumerate(values, 1):
    average = weight * average + (1 - weight) * v
    out.append(average / (1 - weight**i))
  return out


def plot(runs, keys, path, title):
  """Loss curves (left) and a bar chart of the median step times (right)."""
  plt = _plotting.pyplot()
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  sides = [("ours", "-"), ("keras", "--")] + [
      (state_side(d), style) for d, style in zip(STATE_DTYPES, (":", "-."))
  ]
  for i, key in enumerate(keys):
    for side, style in sides:
      run = runs.get((key, side))
      if run is None:
        continue
      left.plot(range(1,
                      len(run["losses"]) + 1), smooth(run["losses"]), style,
                color=colors[i % len(colors)], label=run["label"])
  firsts = [run["losses"][0] for run in runs.values() if run["losses"]]
  if firsts:  # an early spike (SGD) would squash every other curve; the data is in results.json
    left.set_ylim(top=1.1 * max(firsts))
  left.set_xlabel("step")
  left.set_ylabel("training loss (cross-entropy, smoothed)")
  left.set_title(
      "training loss: tf_opt_plugin (solid; bfloat16 state dotted, "
      "8-bit dash-dotted) vs Keras (dashed)", fontsize=9)
  left.legend(fontsize=8)
  left.grid(alpha=0.3)
  names = [PAIRS[k][0] for k in keys]
  xs = range(len(keys))
  ours = [
      runs[(k, "ours")]["step_ms"] if (k, "ours") in runs else 0 for k in keys
  ]
  theirs = [
      runs[(k, "keras")]["step_ms"] if (k, "keras") in runs else 0 for k in keys
  ]
  bars_ours = right.bar([x - 0.2 for x in xs], ours, 0.4, label="tf_opt_plugin")
  bars_keras = right.bar([x + 0.2 for x in xs], theirs, 0.4,
                         label="keras.optimizers")
  for bar in list(bars_ours) + list(bars_keras):
    right.annotate(f"{bar.get_height():.0f}",
                   (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                   ha="center", va="bottom", fontsize=8)
  right.set_xticks(list(xs))
  right.set_xticklabels(names)
  right.set_ylabel("median time per fit() step (ms)")
  right.set_title("step time (lower is better)")
  right.legend(fontsize=8)
  import textwrap  # pylint: disable=g-import-not-at-top
  fig.suptitle(textwrap.fill(title, 150), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _machine_line():
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (
      f"{_machine.cpu_description()}, {os.cpu_count()} logical cores; Python "
      f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}"
  )


def _fused_status():
  """'fused ops loaded' or why the pure-TF twin runs instead."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_opt_plugin import ops  # pylint: disable=g-import-not-at-top
  try:
    ops.load_library()
  except Exception:  # pylint: disable=broad-except
    pass
  reason = ops.dispatch_reason(tf.Variable([0.0]))
  if reason is None:
    return True, "fused custom ops loaded (CPU kernels)"
  return False, (
      f"fused ops NOT in use (dispatch_reason={reason!r}): our optimizers "
      "run their pure-TF twins, so expect no speed-up")


# ------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------
# The model's and the run's sizes, integers >= 1: (flag, default, help).
SIZES = (
    ("--batch-size", 4, "sequences per batch"),
    ("--seq-len", 64, "characters per sequence"),
    ("--width", 256, "model width (d_model)"),
    ("--layers", 2, "transformer blocks"),
    ("--heads", 4, "attention heads"),
    ("--eval-batches", 32, "held-out batches for the final loss and accuracy"),
)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m tf_opt_plugin.demo", description=
      ("Trains a byte-level transformer language model on the text of Python's "
       "standard library with fit(), once with each chosen tf_opt_plugin optimizer "
       "and once with its keras.optimizers counterpart (same model, initial weights, "
       "batches and hyperparameters), then prints a table and writes results.md, "
       "results.json and demo.png into --output-dir. The defaults take a few "
       "minutes on 2 CPU cores."),
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument(
      "--optimizers", default=",".join(OPTIMIZERS),
      help="comma-separated subset of: " + ", ".join(OPTIMIZERS))
  parser.add_argument(
      "--state-dtypes", default=",".join(STATE_DTYPES),
      help="reduced-precision state dtypes (state_dtype) our " +
      " and ".join(PAIRS[k][0] for k in STATE_OPTIMIZERS) +
      " also train with, beside float32 state; comma-separated subset of " +
      ", ".join(STATE_DTYPES) + ", or '' for none")
  parser.add_argument("--steps", type=int, default=200,
                      help="training steps (batches) per run")
  parser.add_argument(
      "--output-dir", default="tf_opt_plugin_demo",
      help="folder for results.md, results.json and demo.png "
      "(created if missing)")
  for flag, default, help_text in SIZES:
    parser.add_argument(flag, type=int, default=default, help=help_text)
  parser.add_argument(
      "--skip-steps", type=int, default=5,
      help="first steps left out of the median step time (the first "
      "traces the training function)")
  parser.add_argument(
      "--seed", type=int, default=0,
      help="seed of the initial weights and of the batch selection")
  parser.add_argument(
      "--max-text-mb", type=float, default=None,
      help="read at most this much standard-library text (default: all "
      "top-level modules, about 5 MB)")
  parser.add_argument("--no-plot", action="store_true",
                      help="skip demo.png (no matplotlib needed)")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args(argv)
  keys = [k.strip().lower() for k in args.optimizers.split(",") if k.strip()]
  unknown = [k for k in keys if k not in PAIRS]
  if unknown or not keys:
    parser.error(
        f"--optimizers: unknown {', '.join(unknown) or '(empty)'}; choose from "
        + ", ".join(OPTIMIZERS))
  args.keys = [k for k in OPTIMIZERS if k in keys]
  state_dtypes = [
      d.strip().lower() for d in args.state_dtypes.split(",") if d.strip()
  ]
  unknown = [d for d in state_dtypes if d not in STATE_DTYPES]
  if unknown:
    parser.error(f"--state-dtypes: unknown {', '.join(unknown)}; choose from " +
                 ", ".join(STATE_DTYPES))
  args.state_dtypes = [d for d in STATE_DTYPES if d in state_dtypes]
  if args.steps < 2:
    parser.error("--steps must be >= 2")
  if args.skip_steps < 1 or args.skip_steps >= args.steps:
    parser.error("--skip-steps must be in [1, --steps)")
  if args.width % args.heads:
    parser.error("--width must be a multiple of --heads")
  for flag, _, _ in SIZES:
    if getattr(args, flag[2:].replace("-", "_")) < 1:
      parser.error(f"{flag} must be >= 1")
  return args


def main(argv=None):
  """Runs the demo; returns (exit code, {(optimizer, side): run})."""
  args = parse_args(argv)
  if not args.no_plot:
    _plotting.pyplot()  # fail now, not after minutes of training
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top

  os.makedirs(args.output_dir, exist_ok=True)
  started = time.perf_counter()
  load_start = _machine.load_average(periods=1)
  machine = _machine_line()
  max_bytes = None if args.max_text_mb is None else int(args.max_text_mb * 1e6)
  train_text, eval_text = stdlib_text(max_bytes)
  x, y = windows(train_text, args.steps * args.batch_size, args.seq_len,
                 args.seed)
  x_eval, y_eval = windows(eval_text, args.eval_batches * args.batch_size,
                           args.seq_len, args.seed + 1)
  data = (x, y, x_eval, y_eval)
  fused, fused_text = _fused_status()
  model = make_model(args.seq_len, args.width, args.layers, args.heads,
                     args.seed)
  params = model.count_params()
  setting = (
      f"byte-level transformer LM ({args.layers} blocks, width {args.width}, "
      f"{args.heads} heads, FFN {4 * args.width}, {params:,} parameters in "
      f"{len(model.trainable_variables)} variables), {args.steps} steps of "
      f"{args.batch_size} x {args.seq_len} characters of Python's standard "
      f"library ({len(train_text):,} training / {len(eval_text):,} held-out "
      f"characters), seed {args.seed}")
  del model
  print(f"tf_opt_plugin demo: {setting}")
  print(f"  machine: {machine}; load average {load_start}")
  print(f"  {fused_text}")
  print(f"  output: {os.path.abspath(args.output_dir)}")

  if not args.quiet:
    print("  warming up the process (a few untimed steps, not reported) ...",
          flush=True)
  _warm_up(data, args)
  runs = {}
  for i, key in enumerate(args.keys):
    # Alternate which side goes first, so neither always gets the warmer machine.
    order = ("ours", "keras") if i % 2 == 0 else ("keras", "ours")
    for side in order:
      runs[(key, side)] = train_one(side, key, data, args)
    if key in STATE_OPTIMIZERS:
      for state_dtype in args.state_dtypes:
        runs[(key,
              state_side(state_dtype))] = train_one("ours", key, data, args,
                                                    state_dtype)
  load_end = _machine.load_average(periods=1)
  total_s = time.perf_counter() - started

  rows = table_rows(runs)
  print()
  print(format_text_table(rows))
  print(
      f"\nms/step: median over steps {args.skip_steps + 1}-{args.steps} of fit(); speed-up "
      "= Keras ms/step / ours; 1st step = tracing + the first step; held-out = "
      f"{args.eval_batches} batches of unseen standard-library files; state KiB = "
      "the optimizer's variables but its step count and learning rate; rows "
      "'<dtype> state' = our optimizer with state_dtype=<dtype> (Keras has no "
      "reduced-precision state; under int8, variables of fewer than 4096 "
      "elements keep float32 state), loss vs float32 state = its held-out "
      "loss / ours with float32 state - 1.")
  print(
      f"Load average {load_start} at start, {load_end} at end; total {total_s:.0f} s."
  )
  nonfinite = [r["label"] for r in runs.values() if not r["finite"]]
  if nonfinite:
    print("Non-finite losses: " + ", ".join(nonfinite))

  command = "python -m tf_opt_plugin.demo " + " ".join(
      argv if argv is not None else sys.argv[1:])
  with open(os.path.join(args.output_dir, "results.md"), "w") as f:
    f.write(
        f"# tf_opt_plugin demo\n\n`{command.strip()}`\n\n{setting}.\n\n"
        f"Machine: {machine}; load average {load_start} at start, {load_end} "
        f"at end; {fused_text}; total {total_s:.0f} s.\n\n" +
        format_markdown_table(rows) + "\n")
  with open(os.path.join(args.output_dir, "results.json"), "w") as f:
    json.dump(
        {
            "setting": setting,
            "machine": machine,
            "fused": fused,
            "load_average": [load_start, load_end],
            "total_s": total_s,
            "args": {
                k: v for k, v in vars(args).items()
            },
            "runs": list(runs.values())
        }, f, indent=1)
  if not args.no_plot:
    png = os.path.join(args.output_dir, "demo.png")
    plot(runs, args.keys, png, setting)
    print(f"Wrote {png}")
  print(f"Wrote {os.path.join(args.output_dir, 'results.md')} and results.json")
  del np, keras
  return 0, runs


def console_main():
  """Entry point of the `tf-opt-plugin-demo` console script."""
  sys.exit(main()[0])


if __name__ == "__main__":
  console_main()
