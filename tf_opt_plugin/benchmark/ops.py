"""One optimizer step over the BERT-base variable set: fused ops vs Keras vs TF, and the bandwidth floor.

`python -m tf_opt_plugin.benchmark.ops --help`; `python -m tf_opt_plugin.benchmark` runs it
together with the fit() benchmark.

Times, in one process and for float32:

  * the fused ops of tf_opt_plugin (AdamW, LAMB, Adafactor, Lion), called per variable inside
    one tf.function that covers all 199 variables (one call = one step);
  * the multi-tensor AdamW, LAMB and Lion ops, one op for all 199 variables (what the Keras
    optimizers run);
  * the same-math keras.optimizers classes (AdamW, Lamb, Adafactor, Lion) applying the same
    gradients,
    in a tf.function without XLA and with jit_compile=True;
  * TF's built-in tf.raw_ops.ResourceApplyAdam over the same variables, in one tf.function;
  * a streaming-copy measurement of sustained memory bandwidth, from which each algorithm's
    bytes floor (the time to move its compulsory bytes once) is derived;
  * the fused AdamW, LAMB and Lion ops with their state stored in bfloat16 and in 8 bits
    (block-wise, issue 16), beside the same ops with float32 state: the time ratio, and the
    ratio to each layout's own bytes floor.  Keras has no reduced-precision state, so its
    float32-state keras.optimizers.AdamW is shown beside them only for scale.

and prints the median time per step, the ratios the issue's targets are about, and PASS / FAIL
for each target.  Usage:

  python -m tf_opt_plugin.benchmark.ops [--steps N] [--warmup N] [--only adamw,lamb,...]
                                        [--shapes bert-base|tiny] [--markdown PATH]

If the op library cannot be loaded, the fused rows are reported as skipped, with the reason.
"""

import datetime
import gc
import math
import os
import platform
import statistics
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from tf_opt_plugin.benchmark import _machine  # noqa: E402
from tf_opt_plugin.benchmark import _timing  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import BERT_BASE_SHAPES  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import EXPECTED_NUM_PARAMS  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import num_params  # noqa: E402
from tf_opt_plugin.benchmark.bert_base_shapes import TINY_SHAPES  # noqa: E402

SHAPE_SETS = {"bert-base": BERT_BASE_SHAPES, "tiny": TINY_SHAPES}

# --------------------------------------------------------------------------------------------
# Hyperparameters.  Chosen so that the fused op and the Keras class compute the same math:
#   AdamW: Keras AdamW semantics (decoupled decay, epsilon-hat), weight_decay 0.01 on both.
#   LAMB: weight decay 0 on both -- Keras Lamb applies decay outside the trust ratio, the fused
#         op (paper LAMB) inside it, so only decay 0 makes them the same update.
#   Adafactor: Keras defaults (relative_step=True, lr 1e-3, beta_2_decay -0.8, clip 1.0).
#   Lion: Keras defaults (beta_2 0.99), weight_decay 0.01 on both (the same update to the bit).
# --------------------------------------------------------------------------------------------
LR = 1e-3
BETA_1 = 0.9
BETA_2 = 0.999
EPSILON = 1e-7
ADAMW_WEIGHT_DECAY = 0.01
LAMB_EPSILON = 1e-7  # Keras Lamb default
LION_BETA_2 = 0.99  # Keras Lion default
LION_WEIGHT_DECAY = 0.01
ADAFACTOR = dict(beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                 clip_threshold=1.0, relative_step=True)
SEED = 1234

# Compulsory DRAM traffic per float32 parameter (bytes), see the module docstring of the floor.
BYTES_PER_PARAM = {
    "adamw": lambda rank: 7 * 4,  # read w, g, m, v; write w, m, v
    "lamb":
        lambda rank: 10 *
        4,  # pass 1: read w, g, m, v, write m, v; pass 2: read w, m, v, write w
    # factored (rank >= 2): pass 1 reads g and w (the row / column sums need all of g, and the
    # step size RMS(w) and the clip RMS(u) must be known before any w is written), pass 2 reads
    # g and w and writes w (r, c negligible); rank < 2: v is a full-size slot, read and written
    # in pass 1 and read in pass 2.
    "adafactor": lambda rank: (5 if rank >= 2 else 8) * 4,
    "lion": lambda rank: 5 * 4,  # read w, g, m; write w, m
}
BYTES_PER_PARAM["adam"] = BYTES_PER_PARAM["adamw"]

# Reduced-precision state (issue 16). The slot layouts the state rows time, beside float32.
STATE_LAYOUTS = ("bfloat16", "int8")
# Variables with fewer elements keep float32 state under "int8", as the optimizers do
# (tf_opt_plugin.optimizers: state_dtype="int8"; bitsandbytes does the same).
INT8_MIN_ELEMENTS = 4096
QUANTIZATION_BLOCK = 256
# How often one step touches each stored element, per algorithm: (variable reads + writes,
# gradient reads, accesses of each slot, number of slots).  AdamW and Lion read and write each
# slot once; LAMB reads and writes it in pass 1 and reads it again in pass 2, where it also
# reads the variable a second time.
ACCESSES = {
    "adamw": (2, 1, 2, 2),
    "lamb": (3, 1, 3, 2),
    "lion": (2, 1, 2, 1),
}


def slot_layout(layout, size):
  """The layout a variable of `size` elements really gets: float32 below 4096 under int8."""
  if layout == "int8" and size < INT8_MIN_ELEMENTS:
    return "float32"
  return layout


def layout_bytes(algorithm, layout, size):
  """The bytes one step of `algorithm` must move for a float32 variable of `size` elements
  whose slots are stored as `layout` ("float32", "bfloat16" or "int8").

  Each slot access moves 4 (float32), 2 (bfloat16) or 1 byte (int8) per element; an int8
  access also moves the block's float32 absmax, 4 bytes per 256 elements.  With float32 state
  this is BYTES_PER_PARAM's count:

  >>> layout_bytes("adamw", "float32", 1000), layout_bytes("lamb", "float32", 1000)
  (28000, 40000)
  >>> layout_bytes("adamw", "bfloat16", 1000), layout_bytes("adamw", "int8", 1000)
  (20000, 28000)
  >>> layout_bytes("adamw", "int8", 4096)  # 3 * 4 * 4096 + 4 * (4096 + 4 * 16)
  65792
  """
  var_accesses, grad_reads, slot_accesses, slots = ACCESSES[algorithm]
  layout = slot_layout(layout, size)
  per_access = {"float32": 4 * size, "bfloat16": 2 * size}.get(layout)
  if per_access is None:  # int8: the codes and each block's absmax
    per_access = size + 4 * -(-size // QUANTIZATION_BLOCK)
  return (4 * size * (var_accesses + grad_reads) +
          per_access * slot_accesses * slots)


GROUPS = ("adamw", "lamb", "adafactor", "lion")
# The row-name suffix of each reduced state layout: fused_adamw_bf16, fused_lamb_int8, ...
STATE_SUFFIX = {"bfloat16": "bf16", "int8": "int8"}
STATE_GROUPS = ("adamw", "lamb", "lion")  # the algorithms with state_dtype
STATE_ROWS = {  # row -> (algorithm, layout)
    f"fused_{alg}_{STATE_SUFFIX[layout]}": (alg, layout) for alg in STATE_GROUPS
    for layout in STATE_LAYOUTS
}
ROWS = {
    "adamw":
        ("fused_adamw", "fused_adamw_bf16", "fused_adamw_int8",
         "fused_multi_adamw", "raw_adam", "keras_adamw", "keras_adamw_xla"),
    "lamb": ("fused_lamb", "fused_lamb_bf16", "fused_lamb_int8",
             "fused_multi_lamb", "keras_lamb", "keras_lamb_xla"),
    "adafactor": ("fused_adafactor", "keras_adafactor", "keras_adafactor_xla"),
    "lion": ("fused_lion", "fused_lion_bf16", "fused_lion_int8",
             "fused_multi_lion", "keras_lion", "keras_lion_xla"),
}
ROW_INFO = {  # row -> (label, algorithm of its bytes floor)
    "fused_adamw": ("tf_opt_plugin resource_apply_adamw (fused)", "adamw"),
    "fused_multi_adamw": ("tf_opt_plugin multi_tensor_apply_adamw (fused)", "adamw"),
    "raw_adam": ("tf.raw_ops.ResourceApplyAdam", "adam"),
    "keras_adamw": ("keras.optimizers.AdamW, tf.function", "adamw"),
    "keras_adamw_xla": ("keras.optimizers.AdamW, jit_compile=True", "adamw"),
    "fused_lamb": ("tf_opt_plugin resource_apply_lamb (fused)", "lamb"),
    "fused_multi_lamb": ("tf_opt_plugin multi_tensor_apply_lamb (fused)", "lamb"),
    "keras_lamb": ("keras.optimizers.Lamb, tf.function", "lamb"),
    "keras_lamb_xla": ("keras.optimizers.Lamb, jit_compile=True", "lamb"),
    "fused_adafactor": ("tf_opt_plugin resource_apply_adafactor (fused)", "adafactor"),
    "keras_adafactor": ("keras.optimizers.Adafactor, tf.function", "adafactor"),
    "keras_adafactor_xla": ("keras.optimizers.Adafactor, jit_compile=True", "adafactor"),
    "fused_lion": ("tf_opt_plugin resource_apply_lion (fused)", "lion"),
    "fused_multi_lion": ("tf_opt_plugin multi_tensor_apply_lion (fused)", "lion"),
    "keras_lion": ("keras.optimizers.Lion, tf.function", "lion"),
    "keras_lion_xla": ("keras.optimizers.Lion, jit_compile=True", "lion"),
}
ROW_INFO.update({  # the floor of a state row counts the bytes of its layout
    row: (f"tf_opt_plugin resource_apply_{alg} (fused), {layout} state",
          f"{alg}:{layout}") for row, (alg, layout) in STATE_ROWS.items()
})

# (description, numerator row, denominator row, comparison, threshold)
TARGETS = [
    ("fused AdamW / ResourceApplyAdam", "fused_adamw", "raw_adam", "<=", 1.1),
    ("Keras AdamW (no XLA) / fused AdamW", "keras_adamw", "fused_adamw", ">=",
     3.0),
    ("Keras Lamb (no XLA) / fused Lamb", "keras_lamb", "fused_lamb", ">=", 2.5),
    ("Keras Lamb (XLA) / fused Lamb", "keras_lamb_xla", "fused_lamb", ">", 1.0),
    ("Keras Adafactor (no XLA) / fused Adafactor", "keras_adafactor",
     "fused_adafactor", ">=", 2.5),
    ("Keras Adafactor (XLA) / fused Adafactor", "keras_adafactor_xla",
     "fused_adafactor", ">", 1.0),
    ("fused AdamW / bytes floor", "fused_adamw", "floor:adamw", "<=", 1.3),
    ("fused Lamb / bytes floor", "fused_lamb", "floor:lamb", "<=", 1.3),
    ("fused Adafactor / bytes floor", "fused_adafactor", "floor:adafactor",
     "<=", 1.3),
    # The multi-tensor ops (one op for all 199 variables, what the Keras optimizers run).
    ("multi-tensor AdamW / bytes floor", "fused_multi_adamw", "floor:adamw",
     "<=", 1.3),
    ("multi-tensor Lamb / bytes floor", "fused_multi_lamb", "floor:lamb", "<=",
     1.3),
]
# Issue 16: reduced-precision state against the same fused op with float32 state, and
# against its own (smaller) bytes floor.  Lion's state rows are shown without a target.
for _alg, _name in (("adamw", "AdamW"), ("lamb", "Lamb")):
  for _layout, _threshold in (("bfloat16", 0.80), ("int8", 0.72)):
    _row = f"fused_{_alg}_{STATE_SUFFIX[_layout]}"
    TARGETS.append((f"fused {_name}, {_layout} / float32 state", _row,
                    f"fused_{_alg}", "<=", _threshold))
    TARGETS.append((f"fused {_name}, {_layout} state / its bytes floor", _row,
                    f"floor:{_alg}:{_layout}", "<=", 1.3))
del _alg, _name, _layout, _threshold, _row

# --------------------------------------------------------------------------------------------
# The plugin.
# --------------------------------------------------------------------------------------------
FUSED_FUNCTIONS = ("resource_apply_adamw", "resource_apply_lamb",
                   "resource_apply_adafactor", "resource_apply_lion",
                   "multi_tensor_apply_adamw", "multi_tensor_apply_lamb",
                   "multi_tensor_apply_lion")


def _one_line(e):
  """The most informative line of an exception (TF's graph errors put it last)."""
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return "%s: %s" % (type(e).__name__, lines[-1] if lines else "")


def import_plugin():
  """Returns (tf_opt_plugin.ops module, where it came from) or (None, reason)."""
  try:
    import tf_opt_plugin.ops as ops  # pylint: disable=g-import-not-at-top
    missing = [f for f in FUSED_FUNCTIONS if not hasattr(ops, f)]
    if missing:
      raise ImportError("tf_opt_plugin.ops has no %s" % ", ".join(missing))
    ops.load_library()
    where = os.path.dirname(os.path.abspath(ops.__file__))
    return ops, "package %s, library %s" % (where, ops.library_path())
  except Exception as e:  # pylint: disable=broad-except
    return None, _one_line(e)


# --------------------------------------------------------------------------------------------
# Machine and bandwidth.
# --------------------------------------------------------------------------------------------
def machine_info():
  mem = ""
  try:
    with open("/proc/meminfo") as f:
      mem = "%.1f GiB" % (int(f.readline().split()[1]) / 2**20)
  except (OSError, ValueError, IndexError):
    pass
  return [
      ("CPU", _machine.cpu_description(flags=("avx2", "avx512f", "amx_tile"))),
      ("transparent huge pages", _huge_pages()),
      ("logical cores", str(os.cpu_count())),
      ("memory", mem),
      ("TF intra-op / inter-op threads", "%d / %d (0 = all cores)" %
       (tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads())),
      ("Python", platform.python_version()),
      ("TensorFlow", tf.__version__),
      ("Keras", keras.__version__),
      ("NumPy", np.__version__),
      ("OS", platform.platform()),
  ]


def _huge_pages():
  """The THP mode. Under "madvise", NumPy's large buffers (the floor's) get huge pages and
  TF's tensors do not, unless glibc is told to madvise them (GLIBC_TUNABLES)."""
  try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
      text = f.read()
  except OSError:
    return "n/a"
  mode = text[text.find("[") +
              1:text.find("]")] if "[" in text else text.strip()
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  return "%s; GLIBC_TUNABLES=%s" % (mode, tunables or "(unset)")


def _threaded(fn, pieces):
  threads = [threading.Thread(target=fn, args=p) for p in pieces]
  for t in threads:
    t.start()
  for t in threads:
    t.join()


def measure_bandwidth(mib=1024, reps=7):
  """Sustained memory bandwidth (bytes/s read + written), best of a few methods.

  Buffers of `mib` MiB each, far larger than the L2 and (reported) L3 caches.  Returns
  (best bytes/s, [(method, bytes/s), ...]).  Each method's rate is its best repetition (the
  STREAM convention), the floor uses the fastest method.
  """
  n = mib * 2**20 // 4
  a = np.full(n, 1.0, np.float32)
  b = np.full(n, 2.0, np.float32)
  nthreads = os.cpu_count() or 1

  def split(k):
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    return list(zip(edges[:-1], edges[1:]))

  def time_best(fn):
    fn()  # touch / warm
    best = float("inf")
    for _ in range(reps):
      t0 = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - t0)
    return best

  results = []
  # 1. np.copyto (memcpy), one thread: read a, write b.
  t = time_best(lambda: np.copyto(b, a))
  results.append(("np.copyto, 1 thread (read+write)", 2 * 4 * n / t))
  # 2. np.copyto split across all cores (numpy releases the GIL for the copy).
  if nthreads > 1:
    parts = split(nthreads)
    t = time_best(
        lambda: _threaded(lambda s, e: np.copyto(b[s:e], a[s:e]), parts))
    results.append(
        ("np.copyto, %d threads (read+write)" % nthreads, 2 * 4 * n / t))
  # 3. In-place add b += a across all cores: read a, b; write b (the access pattern of an
  #    optimizer update: no write-allocate traffic on top of the counted bytes).
  parts = split(nthreads)
  t = time_best(
      lambda: _threaded(lambda s, e: np.add(b[s:e], a[s:e], out=b[s:e]), parts))
  results.append(
      ("np.add in place, %d threads (2 reads+write)" % nthreads, 3 * 4 * n / t))
  del a, b
  # 4. TF's own multi-threaded (Eigen) in-place update: dst += src inside a tf.function
  #    (a plain assign would only share the buffer, not copy it).
  src = tf.Variable(tf.ones([n], tf.float32))
  dst = tf.Variable(tf.zeros([n], tf.float32))

  @tf.function
  def tf_add():
    dst.assign_add(src.read_value(), read_value=False)

  t = time_best(tf_add)
  results.append(
      ("tf Variable.assign_add, tf.function (2 reads+write)", 3 * 4 * n / t))
  del src, dst, tf_add
  gc.collect()
  return max(r for _, r in results), results


def floor_seconds(algorithm, shapes, bandwidth):
  """(seconds, bytes) of moving `algorithm`'s compulsory bytes over `shapes` once;
  `algorithm` "adamw:bfloat16" (say) counts the bytes of that state layout."""
  algorithm, _, layout = algorithm.partition(":")
  if layout:
    total = sum(
        layout_bytes(algorithm, layout, math.prod(s)) for _, s in shapes)
  else:
    total = sum(
        BYTES_PER_PARAM[algorithm](len(s)) * math.prod(s) for _, s in shapes)
  return total / bandwidth, total


# --------------------------------------------------------------------------------------------
# Variables.
# --------------------------------------------------------------------------------------------
def initial_value(i, name, shape):
  if name.endswith("gamma"):
    return tf.ones(shape, tf.float32)
  if name.endswith("beta") or name.endswith("bias"):
    return tf.zeros(shape, tf.float32)
  return tf.random.stateless_normal(shape, seed=[SEED, i], stddev=0.02,
                                    dtype=tf.float32)


def make_gradients(shapes):
  return [
      tf.random.stateless_normal(s, seed=[SEED + 1, i], stddev=1e-3,
                                 dtype=tf.float32)
      for i, (_, s) in enumerate(shapes)
  ]


def make_tf_variables(shapes):
  return [
      tf.Variable(initial_value(i, n, s), name=n.replace("/", "_"))
      for i, (n, s) in enumerate(shapes)
  ]


def make_keras_variables(shapes):
  return [
      keras.Variable(initial_value(i, n, s), name=n.replace("/", "_"))
      for i, (n, s) in enumerate(shapes)
  ]


def zeros_like_vars(variables, suffix, layout="float32", ops=None):
  """Zero slots of `variables`, one per variable, stored as `layout`: float32 variables,
  bfloat16 variables, or (int8) `ops.QuantizedState`s of uint8 codes and float32 absmax,
  with float32 slots for variables under INT8_MIN_ELEMENTS (as the optimizers build)."""
  slots = []
  for v in variables:
    name = v.name.split(":")[0] + suffix
    kind = slot_layout(layout, v.shape.num_elements())
    if kind == "int8":
      slots.append(
          ops.QuantizedState(
              tf.Variable(tf.zeros(v.shape, tf.uint8), name=name),
              tf.Variable(tf.zeros(ops.absmax_shape(v.shape), tf.float32),
                          name=name + "_absmax")))
    else:
      dtype = v.dtype if kind == "float32" else tf.as_dtype(kind)
      slots.append(tf.Variable(tf.zeros(v.shape, dtype), name=name))
  return slots


# --------------------------------------------------------------------------------------------
# Step functions.  Each builder returns (step_fn, cleanup-list) where step_fn() performs one
# optimizer step over all variables.
# --------------------------------------------------------------------------------------------
ADAMW_HYPERPARAMETERS = dict(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2,
                             epsilon=EPSILON, weight_decay=ADAMW_WEIGHT_DECAY)
LAMB_HYPERPARAMETERS = dict(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2,
                            epsilon=LAMB_EPSILON, weight_decay_rate=0.0)
LION_HYPERPARAMETERS = dict(learning_rate=LR, beta_1=BETA_1, beta_2=LION_BETA_2,
                            weight_decay=LION_WEIGHT_DECAY)


def _build_fused_moments(apply_fn, variables, grads, one_call, hyperparameters,
                         layout="float32", ops=None):
  """One step of an (m, v)-slot fused op over all variables: one call per variable, or with
  `one_call` a single call taking the lists (the multi-tensor functions); the slots stored
  as `layout`."""
  m = zeros_like_vars(variables, "_m", layout, ops)
  v = zeros_like_vars(variables, "_v", layout, ops)
  step = tf.Variable(0, dtype=tf.int64)

  @tf.function
  def fn():
    t = step.assign_add(1)
    if one_call:
      apply_fn(variables, m, v, grads, step=t, fused=True, **hyperparameters)
    else:
      for w, mm, vv, g in zip(variables, m, v, grads):
        apply_fn(w, mm, vv, g, step=t, fused=True, **hyperparameters)

  return fn, [m, v]


def _moments_builder(algorithm, hyperparameters, one_call, layout="float32"):
  """build(ops, variables, grads) of `algorithm`'s per-variable op, or with
  `one_call` its multi-tensor op; its slots stored as `layout`."""
  name = ("multi_tensor_apply_" if one_call else "resource_apply_") + algorithm

  def build(ops, variables, grads):
    return _build_fused_moments(getattr(ops, name), variables, grads, one_call,
                                hyperparameters, layout, ops)

  return build


build_fused_adamw = _moments_builder("adamw", ADAMW_HYPERPARAMETERS, False)
build_multi_adamw = _moments_builder("adamw", ADAMW_HYPERPARAMETERS, True)
build_fused_lamb = _moments_builder("lamb", LAMB_HYPERPARAMETERS, False)
build_multi_lamb = _moments_builder("lamb", LAMB_HYPERPARAMETERS, True)


def _build_fused_lion(apply_fn, variables, grads, one_call, layout="float32",
                      ops=None):
  """One Lion step over all variables (one slot, no step count): one call per variable, or
  with `one_call` the multi-tensor function; the slot stored as `layout`."""
  m = zeros_like_vars(variables, "_m", layout, ops)

  @tf.function
  def fn():
    if one_call:
      apply_fn(variables, m, grads, fused=True, **LION_HYPERPARAMETERS)
    else:
      for w, mm, g in zip(variables, m, grads):
        apply_fn(w, mm, g, fused=True, **LION_HYPERPARAMETERS)

  return fn, [m]


def build_fused_lion(ops, variables, grads):
  return _build_fused_lion(ops.resource_apply_lion, variables, grads, False)


def build_multi_lion(ops, variables, grads):
  return _build_fused_lion(ops.multi_tensor_apply_lion, variables, grads, True)


def build_state_row(row):
  """build(ops, variables, grads) of a STATE_ROWS row: the per-variable fused op with its
  slots stored in the row's layout."""
  alg, layout = STATE_ROWS[row]
  if alg == "lion":
    return lambda ops, variables, grads: _build_fused_lion(
        ops.resource_apply_lion, variables, grads, False, layout, ops)
  hyperparameters = {
      "adamw": ADAMW_HYPERPARAMETERS,
      "lamb": LAMB_HYPERPARAMETERS
  }[alg]
  return _moments_builder(alg, hyperparameters, False, layout)


def _adafactor_accumulator_shapes(shape):
  """Keras Adafactor's slots: (r, c) = (shape[:-1], shape[:-2] + shape[-1:]) when factored,
  else (v,) shaped like the variable."""
  shape = tuple(shape)
  if len(shape) >= 2:
    return (shape[:-1], shape[:-2] + shape[-1:])
  return (shape,)


def build_fused_adafactor(ops, variables, grads):
  slots = [
      tuple(
          tf.Variable(tf.zeros(s, tf.float32))
          for s in _adafactor_accumulator_shapes(w.shape))
      for w in variables
  ]
  step = tf.Variable(0, dtype=tf.int64)
  hp = {k: v for k, v in ADAFACTOR.items() if k != "relative_step"}

  @tf.function
  def fn():
    t = step.assign_add(1)
    for w, acc, g in zip(variables, slots, grads):
      ops.resource_apply_adafactor(w, acc, g, step=t, learning_rate=LR,
                                   relative_step=ADAFACTOR["relative_step"],
                                   fused=True, **hp)

  return fn, [slots]


def build_raw_adam(variables, grads):
  m = zeros_like_vars(variables, "_m")
  v = zeros_like_vars(variables, "_v")
  step = tf.Variable(0, dtype=tf.float32)
  lr = tf.constant(LR, tf.float32)
  b1 = tf.constant(BETA_1, tf.float32)
  b2 = tf.constant(BETA_2, tf.float32)
  eps = tf.constant(EPSILON, tf.float32)

  @tf.function
  def fn():
    t = step.assign_add(1.0)
    # The scalars of this step, the same for every variable.
    scalars = dict(beta1_power=tf.pow(b1, t), beta2_power=tf.pow(b2, t), lr=lr,
                   beta1=b1, beta2=b2, epsilon=eps)
    for w, mm, vv, g in zip(variables, m, v, grads):
      tf.raw_ops.ResourceApplyAdam(var=w.handle, m=mm.handle, v=vv.handle,
                                   grad=g, use_locking=True, **scalars)

  return fn, [m, v]


def make_keras_optimizer(group):
  if group == "adamw":
    return keras.optimizers.AdamW(learning_rate=LR,
                                  weight_decay=ADAMW_WEIGHT_DECAY,
                                  beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON)
  if group == "lamb":
    return keras.optimizers.Lamb(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2,
                                 epsilon=LAMB_EPSILON)
  if group == "adafactor":
    return keras.optimizers.Adafactor(learning_rate=LR, **ADAFACTOR)
  if group == "lion":
    return keras.optimizers.Lion(learning_rate=LR, beta_1=BETA_1,
                                 beta_2=LION_BETA_2,
                                 weight_decay=LION_WEIGHT_DECAY)
  raise ValueError(group)


def build_keras(group, variables, grads, jit_compile):
  opt = make_keras_optimizer(group)
  opt.build(variables)
  fn = tf.function(lambda: opt.apply(grads, variables), jit_compile=jit_compile)
  return fn, [opt]


# --------------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------------
def time_steps(fn, steps, warmup):
  first, times = _timing.call_times(fn, steps, warmup)
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "first": first,
      "n": steps
  }


def check_finite(variables):
  for v in variables:
    if not bool(tf.reduce_all(tf.math.is_finite(v))):
      return "non-finite values in %s" % v.name
  return None


def run_group(group, rows, ops, plugin_reason, shapes, grads, args, results,
              log):
  """Times the selected rows of one algorithm group on fresh variables, then frees them."""
  wanted = [r for r in ROWS[group] if r in rows]
  if not wanted:
    return
  tf_vars = None
  keras_vars = None
  for row in wanted:
    label = ROW_INFO[row][0]
    if row.startswith("fused_") and ops is None:
      results[row] = {
          "skip": "tf_opt_plugin.ops not importable: " + plugin_reason
      }
      log("  %-58s SKIPPED (tf_opt_plugin.ops cannot be imported)" % label)
      continue
    try:
      if row.startswith("keras_"):
        if keras_vars is None:
          keras_vars = make_keras_variables(shapes)
        fn, keep = build_keras(group, keras_vars, grads,
                               jit_compile=row.endswith("_xla"))
        checked = keras_vars
      else:
        if tf_vars is None:
          tf_vars = make_tf_variables(shapes)
        builder = {
            "fused_adamw": build_fused_adamw,
            "fused_lamb": build_fused_lamb,
            "fused_multi_adamw": build_multi_adamw,
            "fused_multi_lamb": build_multi_lamb,
            "fused_adafactor": build_fused_adafactor,
            "fused_lion": build_fused_lion,
            "fused_multi_lion": build_multi_lion
        }.get(row)
        if row in STATE_ROWS:
          builder = build_state_row(row)
        fn, keep = builder(ops, tf_vars, grads) if builder else build_raw_adam(
            tf_vars, grads)
        checked = tf_vars
      r = time_steps(fn, args.steps, args.warmup)
      bad = check_finite(checked)
      if bad:
        r["note"] = bad
      results[row] = r
      log("  %-58s median %9.1f ms  (min %.1f, max %.1f; first call %.2f s)%s" %
          (label, 1e3 * r["median"], 1e3 * r["min"], 1e3 * r["max"], r["first"],
           "  WARNING: " + bad if bad else ""))
      del fn, keep
    except Exception as e:  # pylint: disable=broad-except
      msg = _one_line(e)
      results[row] = {"skip": "error: " + msg}
      log("  %-58s ERROR %s" % (label, msg[:300]))
    gc.collect()
  del tf_vars, keras_vars
  gc.collect()


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------
def evaluate_targets(results, floors):
  out = []
  for desc, num, den, op, thr in TARGETS:
    a = results.get(num, {})
    if den.startswith("floor:"):
      b = {"median": floors[den[6:]][0]} if den[6:] in floors else {}
    else:
      b = results.get(den, {})
    if "median" not in a or "median" not in b:
      out.append((desc, None, op, thr, "SKIP"))
      continue
    ratio = a["median"] / b["median"]
    ok = {"<=": ratio <= thr, ">=": ratio >= thr, ">": ratio > thr}[op]
    out.append((desc, ratio, op, thr, "PASS" if ok else "FAIL"))
  return out


def format_tables(results, floors, targets, markdown, num_variables=199):
  lines = []
  title = "step over all %d variables" % num_variables
  if markdown:
    lines += [
        "| %s | median ms | min ms | bytes floor ms | x floor |" % title,
        "|---|---:|---:|---:|---:|"
    ]
  else:
    lines += [
        "%-58s %10s %10s %10s %8s" %
        (title, "median ms", "min ms", "floor ms", "x floor"), "-" * 100
    ]
  for group in GROUPS:
    for row in ROWS[group]:
      if row not in results:
        continue
      label, alg = ROW_INFO[row]
      r = results[row]
      fl = floors.get(alg)
      fl_ms = "%.1f" % (1e3 * fl[0]) if fl else "-"
      if "median" in r:
        cells = [
            "%.1f" % (1e3 * r["median"]),
            "%.1f" % (1e3 * r["min"]), fl_ms,
            "%.2f" % (r["median"] / fl[0]) if fl else "-"
        ]
      else:
        cells = ["skipped", "-", fl_ms, "-"]
      if markdown:
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
      else:
        lines.append("%-58s %10s %10s %10s %8s" % tuple([label] + cells))
  lines.append("")
  state = state_table(results, floors, markdown)
  if state:
    lines += state + [""]
  if markdown:
    lines += ["| target | ratio | required | result |", "|---|---:|---:|---|"]
  else:
    lines += [
        "%-58s %8s %10s  %s" % ("target", "ratio", "required", "result"),
        "-" * 88
    ]
  for desc, ratio, op, thr, verdict in targets:
    rs = "%.2f" % ratio if ratio is not None else "-"
    if markdown:
      lines.append("| %s | %s | %s %g | **%s** |" %
                   (desc, rs, op, thr, verdict))
    else:
      lines.append("%-58s %8s %10s  %s" % (desc, rs, "%s %g" %
                                           (op, thr), verdict))
  return lines


def state_table(results, floors, markdown):
  """The lines of the reduced-precision state table: per algorithm, the fused op with
  float32, bfloat16 and 8-bit state, its time relative to float32 state and to its own
  bytes floor; keras.optimizers.AdamW below for scale.  [] without state rows."""
  if not any(r in results for r in STATE_ROWS):
    return []
  head = ("fused op, one step, state stored as", "median ms", "x float32 state",
          "floor ms", "x floor")
  if markdown:
    lines = ["| %s |" % " | ".join(head), "|---|---:|---:|---:|---:|"]
  else:
    lines = ["%-58s %10s %16s %10s %8s" % head, "-" * 106]

  def add(label, row, base):
    r, b = results.get(row, {}), results.get(base, {})
    fl = floors.get(ROW_INFO[row][1])
    if "median" in r:
      cells = [
          "%.1f" % (1e3 * r["median"]),
          "%.2f" % (r["median"] / b["median"]) if "median" in b else "-",
          "%.1f" % (1e3 * fl[0]) if fl else "-",
          "%.2f" % (r["median"] / fl[0]) if fl else "-"
      ]
    else:
      cells = ["skipped", "-", "-", "-"]
    if markdown:
      lines.append("| %s | %s |" % (label, " | ".join(cells)))
    else:
      lines.append("%-58s %10s %16s %10s %8s" % tuple([label] + cells))

  for alg in STATE_GROUPS:
    base = "fused_" + alg
    if not any(r in results for r in STATE_ROWS if STATE_ROWS[r][0] == alg):
      continue
    add("%s: float32" % alg, base, base)
    for layout in STATE_LAYOUTS:
      row = "%s_%s" % (base, STATE_SUFFIX[layout])
      if row in results:
        add("%s: %s" % (alg, layout if layout != "int8" else "int8 (8-bit)"),
            row, base)
  if "keras_adamw" in results:
    add("keras.optimizers.AdamW (float32 only)", "keras_adamw", "fused_adamw")
    lines.append(
        "Keras has no reduced-precision optimizer state: keras.optimizers.AdamW "
        "(float32 state) is shown for scale only; its 'x float32 state' is its "
        "time / our fused AdamW with float32 state. Under int8, variables with "
        "fewer than %d elements keep float32 state (as the optimizers do)." %
        INT8_MIN_ELEMENTS)
  return lines


def parse_only(text):
  if not text:
    return [r for g in GROUPS for r in ROWS[g]]
  rows = []
  for item in text.split(","):
    item = item.strip()
    if item in ROWS:
      rows += ROWS[item]
    elif item in ROW_INFO:
      rows.append(item)
    elif item == "fused":
      rows += [r for r in ROW_INFO if r.startswith("fused_")]
    elif item == "keras":
      rows += [r for r in ROW_INFO if r.startswith("keras_")]
    elif item == "state":  # the state rows, the float32 ones they divide by, Keras AdamW
      rows += [
          r for g in STATE_GROUPS
          for r in ROWS[g] if r in STATE_ROWS or r == "fused_" + g
      ] + ["keras_adamw"]
    elif item:
      raise SystemExit(
          "--only: unknown item %r; use groups %s, 'fused', 'keras', 'state' or "
          "rows %s" % (item, ",".join(GROUPS), ",".join(ROW_INFO)))
  return rows


def build_parser():
  parser = _timing.argument_parser("tf_opt_plugin.benchmark.ops", __doc__)
  _timing.add_step_arguments(parser, steps=10, warmup=3)
  parser.add_argument(
      "--only", default="",
      help="comma list of groups (adamw,lamb,adafactor,lion), 'fused', 'keras', "
      "'state' (the bfloat16 and 8-bit state rows with their float32 "
      "baselines) or "
      "row names (%s)" % ",".join(ROW_INFO))
  parser.add_argument("--bandwidth-mib", type=_timing.positive_int,
                      default=1024,
                      help="size of each streaming-copy buffer in MiB")
  parser.add_argument(
      "--shapes", choices=sorted(SHAPE_SETS), default="bert-base",
      help="the variable set: BERT-base (199 tensors, 109M parameters) or "
      "a tiny stand-in for quick checks")
  return parser


def main(argv=None):
  """The command line: runs the benchmark, prints it, writes --markdown."""
  return _timing.main(build_parser(), run, argv)


def run(args, log=None):
  """Runs the benchmark for parsed `args`; returns a report dict.

  Keys: "results" (row -> timings), "targets" ([(description, ratio, op, threshold,
  verdict)]), "markdown" (the tables as a markdown document), "info", "shapes".
  """
  rows = parse_only(args.only)
  if log is None:

    def log(msg=""):
      print(msg, flush=True)

  t_start = time.perf_counter()
  shapes = SHAPE_SETS[args.shapes]
  if args.shapes == "bert-base":
    assert len(shapes) == 199 and num_params(shapes) == EXPECTED_NUM_PARAMS
  info = machine_info()
  load_before = _machine.load_average()
  ops, plugin_where = import_plugin()
  log("tf_opt_plugin op benchmark: one optimizer step over %s (%d tensors, %d "
      "parameters), float32 variables (state float32 unless a row says "
      "otherwise)" % (args.shapes, len(shapes), num_params(shapes)))
  for k, v in info:
    log("  %-32s %s" % (k, v))
  log("  %-32s %s" %
      ("tf_opt_plugin.ops", plugin_where if ops is not None else
       "NOT AVAILABLE (%s); fused rows are skipped" % plugin_where))
  log("  %-32s %s" % ("load average at start", load_before))
  log("  %-32s steps=%d (median reported), warmup=%d" %
      ("timing", args.steps, args.warmup))
  log()

  log("Memory bandwidth (buffers of %d MiB):" % args.bandwidth_mib)
  bandwidth, bw_results = measure_bandwidth(args.bandwidth_mib)
  for name, rate in bw_results:
    log("  %-52s %6.1f GB/s" % (name, rate / 1e9))
  log("  -> floor uses the fastest: %.1f GB/s" % (bandwidth / 1e9))
  floors = {}
  for alg in list(BYTES_PER_PARAM) + [ROW_INFO[r][1] for r in STATE_ROWS]:
    floors[alg] = floor_seconds(alg, shapes, bandwidth)
  for alg in GROUPS + tuple(ROW_INFO[r][1] for r in STATE_ROWS):
    log("  bytes floor %-15s %6.2f GB moved -> %7.1f ms" %
        (alg, floors[alg][1] / 1e9, 1e3 * floors[alg][0]))
  log()

  grads = make_gradients(shapes)
  results = {}
  for group in GROUPS:
    if any(r in rows for r in ROWS[group]):
      log("%s:" % group)
      run_group(group, rows, ops, plugin_where, shapes, grads, args, results,
                log)
  del grads
  gc.collect()

  targets = evaluate_targets(results, floors)
  # Sensitivity: the same floors from the best pure copy (no in-place update method).
  copy_bw = max([r for n, r in bw_results if "copyto" in n] or [bandwidth])
  sensitivity = []
  for row in (r for g in GROUPS for r in ROWS[g] if r.startswith("fused_")):
    alg = ROW_INFO[row][1]
    if "median" in results.get(row, {}):
      sensitivity.append("%s %.2f" % (row, results[row]["median"] /
                                      floor_seconds(alg, shapes, copy_bw)[0]))
  sensitivity_line = None
  if sensitivity and copy_bw != bandwidth:
    sensitivity_line = (
        "for reference, fused / floor with the best plain-copy bandwidth "
        "(%.1f GB/s) instead: %s" % (copy_bw / 1e9, ", ".join(sensitivity)))
  load_after = _machine.load_average()
  elapsed = time.perf_counter() - t_start
  log()
  for line in format_tables(results, floors, targets, markdown=False,
                            num_variables=len(shapes)):
    log(line)
  if sensitivity_line:
    log(sensitivity_line)
  log()
  log("load average at start %s, at end %s (2 cores: values well above ~2 mean concurrent "
      "load)" % (load_before, load_after))
  log("total run time %.0f s" % elapsed)
  for row, r in results.items():
    if "skip" in r:
      log("note: %s skipped: %s" % (row, r["skip"]))
    elif "note" in r:
      log("note: %s: %s" % (row, r["note"]))

  md = [
      "# tf_opt_plugin op benchmark", "",
      "One optimizer step over %s (%d float32 tensors, %d parameters); median of %d "
      "steps after %d warm-up calls. Run %s." %
      (args.shapes, len(shapes), num_params(shapes), args.steps, args.warmup,
       datetime.datetime.now().strftime("%Y-%m-%d %H:%M")), "", "| machine | |",
      "|---|---|"
  ]
  md += ["| %s | %s |" % kv for kv in info]
  md += [
      "| tf_opt_plugin.ops | %s |" %
      (plugin_where if ops is not None else "not available: " + plugin_where),
      "| load average start / end | %s / %s |" % (load_before, load_after), "",
      "Memory bandwidth (read + written bytes per second, best repetition):", ""
  ]
  md += ["- %s: %.1f GB/s" % (n, r / 1e9) for n, r in bw_results]
  md += ["- floor uses %.1f GB/s" % (bandwidth / 1e9), ""]
  md += format_tables(results, floors, targets, markdown=True,
                      num_variables=len(shapes))
  if sensitivity_line:
    md += ["", sensitivity_line[0].upper() + sensitivity_line[1:] + "."]
  md.append("")
  return {
      "results": results,
      "targets": targets,
      "markdown": "\n".join(md),
      "info": info,
      "shapes": args.shapes,
      "load_average": (load_before, load_after),
      "elapsed_s": elapsed
  }


if __name__ == "__main__":
  sys.exit(main())
