"""The one registry of algorithms the op tests and the optimizer tests share.

Each entry holds what both harnesses need to know about an algorithm: its
float64 reference step in references.py, its slots, the function of
tf_opt_plugin.ops that applies its fused op (and the op's graph type), the op
tests' default hyperparameters, and the Keras classes that follow the
reference with the configurations each optimizer test runs them in.
op_harness builds its op adapters (op_harness.AdamW, ...) from the entries,
keras_harness.Algorithm its float64 model of a Keras step and the Keras-side
test tables their parameters (`keras_cases`), so an algorithm is added by one
entry here plus its reference function in references.py.

No TensorFlow and no tf_opt_plugin here (keras_goldens holds numpy arrays):
the worker scripts import the harnesses only after configuring their devices,
and op_harness looks the op function up by name when a test applies it.
"""

import dataclasses
import re
from typing import Any, Callable, Optional

import numpy as np

import keras_goldens as G
import references as R


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
  """One algorithm's facts.

  Attributes:
    name: the registry key, as tf_opt_plugin.ops names the algorithm.
    aliases: other names it is looked up by ("adam": Keras's Adam is the AdamW
      reference with the decay the Keras step passes in).
    reference: its one-step float64 function in references.py.
    call_reference: (reference, w, slots, g, *, step, **kwargs) -> (w, slots):
      `reference` applied to a tuple of slots in the op's order; kwargs are
      the options and hyperparameters.
    slots: (shape, **options) -> [(name, shape)] of the slots, in the op's
      order.
    options: the switches (keyword arguments that are not scalar
      hyperparameters of the op) with their defaults; some change the slots.
    keras_hp: (hp, path, fused_decay) -> the `call_reference` keyword
      arguments of one Keras step of the variable at `path`; hp holds
      `learning_rate` and the keras_harness.Algorithm's hyperparameters,
      fused_decay the decay Keras passes into the step (Adam, AdamW).
    keras_classes: the classes of tf_opt_plugin.optimizers that follow the
      reference (optimizer_configs checks its configurations against them).
    keras_decays_in_step: whether Keras's weight decay of these classes runs
      inside the algorithm's step (`fused_decay` of keras_hp; Adam, AdamW and
      Lion), not before it as `w -= lr * wd * w`.
    keras_defaults: the hyperparameters and options of those classes (and of
      Keras's own) at their defaults; keras_harness.Algorithm takes them
      unless told otherwise.
    op_class: the fused op's name after "ResourceApply" (the op adapter
      class op_harness makes has this name), or None where there is no fused
      op. The tf_opt_plugin.ops function that applies it is
      `resource_apply_<name>`.
    call_op: (op, var, slots, grad, **kwargs) -> the result of `op` called
      with the slots where its signature takes them; kwargs are the options,
      hyperparameters, step, use_locking and fused.
    op_defaults: the hyperparameters of the op tests unless a test says
      otherwise.
    counts_steps: whether the update takes the step count (Lion's does not).
    multi_tensor: whether a `ResourceMultiTensorApply<op_class>` op updates a
      list of variables in one call.
    call_raw_op: (raw_op, handles, grad, *, step, **scalars) -> the raw op
      called with the variable and slot handles where it takes them.
    op_cases: case id -> (adapter keyword arguments, shape, seed): the fused
      op and its twin run 100 steps of each against the reference, in every
      dtype and mode (tests/ops/test_op_trajectories.py).
    keras_cases: table -> {case id: case}: the configurations of its Keras
      classes each optimizer test runs (see `keras_cases` below for the
      tables); the test files build their parameters from them, so a new
      algorithm is tested everywhere by its entry alone.
    slot_list: the op's argument that takes all the slots as one list
      (Adafactor's `accumulators`, whose number follows the variable's rank),
      or None where the op takes each slot by its name.
    fuzz_hyper: hyperparameter -> the values tests/ops/test_fuzz.py draws
      for the fused op besides a learning rate: usual and edge values, each
      valid.
    state_layouts: whether its ops take reduced-precision state (float32,
      bfloat16 or `QuantizedState` slots, issue 16; state_references.py).
    unsigned_slots: the slots that are never negative (second moments): in
      8-bit state they use the unsigned dynamic map, the others the signed
      one.
  """

  name: str
  reference: Callable[..., Any]
  call_reference: Callable[..., Any]
  slots: Callable[..., list]
  keras_hp: Callable[..., dict]
  keras_classes: tuple
  keras_defaults: dict = dataclasses.field(default_factory=dict)
  keras_decays_in_step: bool = False
  aliases: tuple = ()
  options: dict = dataclasses.field(default_factory=dict)
  op_class: Optional[str] = None
  call_op: Optional[Callable[..., Any]] = None
  op_defaults: dict = dataclasses.field(default_factory=dict)
  counts_steps: bool = True
  multi_tensor: bool = False
  call_raw_op: Optional[Callable[..., Any]] = None
  op_cases: dict = dataclasses.field(default_factory=dict)
  keras_cases: dict = dataclasses.field(default_factory=dict)
  slot_list: Optional[str] = None
  fuzz_hyper: dict = dataclasses.field(default_factory=dict)
  state_layouts: bool = False
  unsigned_slots: tuple = ()

  @property
  def op(self):
    """The tf_opt_plugin.ops function that applies the fused op, or None."""
    return None if self.op_class is None else f"resource_apply_{self.name}"

  @property
  def op_type(self):
    """The fused op's type in a graph, or None."""
    return None if self.op_class is None else f"ResourceApply{self.op_class}"

  @property
  def raw_scalars(self):
    """The scalar inputs of the raw op (the library's generated wrapper): the
    hyperparameters of `op_defaults`, in their order, the learning rate as
    `lr`."""
    return tuple("lr" if k == "learning_rate" else k for k in self.op_defaults)

  @property
  def multi_tensor_op_type(self):
    """The multi-tensor op's type in a graph, or None."""
    if not self.multi_tensor:
      return None
    return f"ResourceMultiTensorApply{self.op_class}"

  def options_in(self, kwargs):
    """The options, each from `kwargs` or its default."""
    return {k: kwargs.get(k, default) for k, default in self.options.items()}

  def slot_shapes(self, shape, **options):
    return [s for _, s in self.slots(tuple(shape), **options)]

  def zero_slots(self, shape, **options):
    """float64 zeros for every slot (the state before the first step)."""
    return tuple(
        np.zeros(s, np.float64) for s in self.slot_shapes(shape, **options))

  def reference_step(self, w, slots, g, *, step, **kwargs):
    """One float64 update: (w, slots tuple) after `step` (1-based)."""
    return self.call_reference(self.reference, w, slots, g, step=step, **kwargs)


def raw_op_name(op_type):
  """The library's generated wrapper of op `op_type` ("ResourceApplyAdamW" ->
  "resource_apply_adam_w")."""
  return re.sub(r"(?<!^)(?=[A-Z])", "_", op_type).lower()


# The "every_argument" cases set every argument away from its default (the
# serialization round trips must carry each); a schedule is given by its Keras
# config, which the test deserializes (no Keras here).
_COSINE_SCHEDULE = dict(
    class_name="CosineDecay", config=dict(initial_learning_rate=0.01,
                                          decay_steps=100))
_EVERY_BASE_ARGUMENT = dict(clipnorm=None, global_clipnorm=0.5, clipvalue=None,
                            use_ema=True, ema_momentum=0.9,
                            ema_overwrite_frequency=7, loss_scale_factor=4.0,
                            gradient_accumulation_steps=3, fused=False)


# ----------------------------------------------------------------------------
# SGD (no fused op: the Keras classes run TensorFlow's SGD update)
# ----------------------------------------------------------------------------
def _sgd_slots(shape, momentum=0.0, nesterov=False):
  del nesterov  # same slots either way
  return [("momentum", shape)] if momentum != 0 else []


def _sgd_call_reference(reference, w, slots, g, *, step, momentum=0.0,
                        nesterov=False, **hp):
  del step  # SGD has no step count
  w, b = reference(w, slots[0] if slots else None, g, momentum=momentum,
                   nesterov=nesterov, **hp)
  return w, (() if b is None else (b,))


def _sgd_keras_hp(hp, path, fused_decay):
  del path, fused_decay  # Keras decays SGD's variables outside its step
  return dict(learning_rate=hp["learning_rate"],
              momentum=hp.get("momentum",
                              0.0), nesterov=hp.get("nesterov", False))


SGD = AlgorithmSpec(
    name="sgd", reference=R.sgd_step, call_reference=_sgd_call_reference,
    slots=_sgd_slots, options=dict(momentum=0.0,
                                   nesterov=False), keras_hp=_sgd_keras_hp,
    keras_classes=("SGD",), counts_steps=False, keras_cases=dict(
        slot_names={"sgd": ("SGD", dict(momentum=0.5))},
        every_argument={
            "sgd": ("SGD",
                    dict(_EVERY_BASE_ARGUMENT, learning_rate=_COSINE_SCHEDULE,
                         momentum=0.7, nesterov=True, weight_decay=0.01,
                         name="my_sgd")),
        },
        configs={
            "sgd": ("SGD", dict(learning_rate=0.05), {}, {}),
            "sgd-momentum": ("SGD", dict(learning_rate=0.05,
                                         momentum=0.9), dict(momentum=0.9), {}),
            "sgd-nesterov":
                ("SGD", dict(learning_rate=0.05, momentum=0.9,
                             nesterov=True), dict(momentum=0.9,
                                                  nesterov=True), {}),
            "sgd-weight-decay":
                ("SGD", dict(learning_rate=0.05,
                             weight_decay=0.1), {}, dict(weight_decay=0.1)),
        },
        single_step={"sgd": ("SGD", [0.5, -1.0, -0.5, 3.0])},
        keras_parity={
            "sgd-momentum": ("SGD", dict(learning_rate=0.05, momentum=0.9), {}),
            "sgd-nesterov": ("SGD",
                             dict(learning_rate=0.05, momentum=0.9,
                                  nesterov=True), {}),
        },
        tf_keras_parity={
            "sgd-nesterov":
                ("SGD", dict(learning_rate=0.05, momentum=0.9, nesterov=True))
        },
        sparse={
            "sgd": ("SGD", dict(learning_rate=0.1)),
            "sgd-momentum":
                ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
        },
        fit={
            "sgd": ("SGD", dict(learning_rate=0.1, momentum=0.9), "SGD",
                    dict(learning_rate=0.1, momentum=0.9))
        },
        mixed_precision={
            "sgd": ("SGD", dict(learning_rate=0.05, momentum=0.9))
        },
        keras_file={"sgd": ("SGD", dict(learning_rate=0.05, momentum=0.9))},
        checkpoint={"sgd": ("SGD", dict(learning_rate=0.05, momentum=0.9))},
        dtensor={
            "sgd": ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True))
        },
    ))


# ----------------------------------------------------------------------------
# AdamW (and Adam: weight_decay 0)
# ----------------------------------------------------------------------------
def _adamw_slots(shape, amsgrad=False):
  names = ("m", "v", "vhat") if amsgrad else ("m", "v")
  return [(name, shape) for name in names]


def _adamw_call_reference(reference, w, slots, g, *, step, amsgrad=False, **hp):
  m, v = slots[:2]
  vhat = slots[2] if amsgrad else None
  w, m, v, vhat = reference(w, m, v, g, step=step, vhat=vhat, **hp)
  return w, (m, v) + ((vhat,) if amsgrad else ())


def _adamw_keras_hp(hp, path, fused_decay):
  del path
  # dict(**hp, ...) raises, as a duplicate keyword would, if hp sets it too.
  return dict(**hp, weight_decay=fused_decay)


def _adamw_call_op(op, var, slots, grad, *, amsgrad=False, **kwargs):
  m, v = slots[:2]
  return op(var, m, v, grad, vhat=slots[2] if amsgrad else None, **kwargs)


def _adamw_call_raw_op(raw_op, handles, grad, **kwargs):
  return raw_op(absmax=[], rounding_key=[], var=handles[0], m=handles[1],
                v=handles[2], vhat=handles[3:], grad=grad, **kwargs)


ADAMW = AlgorithmSpec(
    name="adamw", aliases=("adam",), reference=R.adamw_step,
    call_reference=_adamw_call_reference, slots=_adamw_slots,
    options=dict(amsgrad=False), keras_hp=_adamw_keras_hp,
    keras_classes=("Adam", "AdamW"), keras_decays_in_step=True,
    keras_defaults=dict(beta_1=0.9, beta_2=0.999,
                        epsilon=1e-7), op_class="AdamW", call_op=_adamw_call_op,
    multi_tensor=True, call_raw_op=_adamw_call_raw_op, state_layouts=True,
    unsigned_slots=("v", "vhat"), op_cases={
        "rank2-adamw": (dict(amsgrad=False), (7, 5), 0),
        "rank3-amsgrad": (dict(amsgrad=True), (3, 4, 6), 1),
    }, op_defaults=dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999,
                        epsilon=1e-7, weight_decay=0.01),
    fuzz_hyper=dict(beta_1=(0.9, 0.0, 0.5), beta_2=(0.999, 0.0, 0.9),
                    epsilon=(1e-7, 0.0, 1e-3), weight_decay=(0.0, 0.01, 0.5)),
    keras_cases=dict(
        slot_names={
            "adam": ("Adam", dict(amsgrad=True)),
            "adamw": ("AdamW", {}),
        },
        every_argument={
            "adam": ("Adam",
                     dict(_EVERY_BASE_ARGUMENT, learning_rate=0.002, beta_1=0.8,
                          beta_2=0.95, epsilon=1e-5, amsgrad=True)),
            "adamw": ("AdamW",
                      dict(
                          _EVERY_BASE_ARGUMENT, learning_rate=_COSINE_SCHEDULE,
                          weight_decay=dict(
                              class_name="ExponentialDecay",
                              config=dict(initial_learning_rate=0.1,
                                          decay_steps=10, decay_rate=0.5)),
                          beta_1=0.85, amsgrad=True)),
        },
        configs={
            "adam": ("Adam", dict(learning_rate=0.01), {}, {}),
            "adam-amsgrad": ("Adam", dict(learning_rate=0.01, amsgrad=True),
                             dict(amsgrad=True), {}),
            "adam-weight-decay":
                ("Adam", dict(learning_rate=0.01,
                              weight_decay=0.05), {}, dict(weight_decay=0.05)),
            "adamw": ("AdamW",
                      dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99,
                           epsilon=1e-6),
                      dict(beta_1=0.8, beta_2=0.99,
                           epsilon=1e-6), dict(weight_decay=0.004)),
            "adamw-amsgrad": ("AdamW",
                              dict(learning_rate=0.01, weight_decay=0.1,
                                   amsgrad=True), dict(amsgrad=True),
                              dict(weight_decay=0.1)),
        },
        schedules={"adam": ("Adam", {})},
        single_step={
            "adam": ("Adam", [0.5, 1.5, 2.5, 3.5]),
            "adamw": ("AdamW", [0.4980, 1.4960, 2.494, 3.492]),
        },
        goldens={
            "adamw": ("AdamW", G.ADAMW_HP, G.ADAMW),
            "adam-amsgrad": ("Adam", dict(amsgrad=True), G.ADAM_AMSGRAD),
        },
        keras_parity={
            "adam": ("Adam", dict(learning_rate=0.01), {}),
            "adam-amsgrad": ("Adam", dict(learning_rate=0.01,
                                          amsgrad=True), {}),
            "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1), {}),
        },
        tf_keras_parity={
            "adam": ("Adam", dict(learning_rate=0.01, amsgrad=True)),
            "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
        },
        sparse={
            "adam": ("Adam", dict(learning_rate=0.01, amsgrad=True)),
            "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
        },
        fit={
            "adam": ("Adam", dict(learning_rate=0.003), "Adam",
                     dict(learning_rate=0.003)),
            "adamw": ("AdamW", dict(learning_rate=0.003,
                                    weight_decay=0.01), "AdamW",
                      dict(learning_rate=0.003, weight_decay=0.01)),
        },
        mixed_precision={"adamw": ("AdamW", dict(learning_rate=0.01))},
        keras_file={"adamw": ("AdamW", dict(learning_rate=0.01))},
        checkpoint={"adam": ("Adam", dict(learning_rate=0.01, amsgrad=True))},
        dtensor={
            "adam": ("Adam", dict(learning_rate=0.01, amsgrad=True)),
            "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.1)),
        },
    ))


# ----------------------------------------------------------------------------
# LAMB
# ----------------------------------------------------------------------------
def _lamb_slots(shape, use_layer_adaptation=True):
  del use_layer_adaptation  # same slots either way
  return [("m", shape), ("v", shape)]


def _lamb_call_reference(reference, w, slots, g, *, step,
                         use_layer_adaptation=True, **hp):
  m, v = slots
  w, m, v = reference(w, m, v, g, step=step,
                      use_layer_adaptation=use_layer_adaptation, **hp)
  return w, (m, v)


def _lamb_keras_hp(hp, path, fused_decay):
  """Keras-level exclusion lists (regular expressions searched in the
  variable's path) turn into the reference's per-variable arguments."""
  del fused_decay  # Keras decays LAMB's variables outside its step
  hp = dict(hp)
  wd_patterns = hp.pop("exclude_from_weight_decay", None) or []
  la_patterns = hp.pop("exclude_from_layer_adaptation", None)
  la_patterns = wd_patterns if la_patterns is None else la_patterns
  if any(re.search(p, path) for p in wd_patterns):
    hp["weight_decay_rate"] = 0.0
  hp.setdefault("weight_decay_rate", 0.0)
  adapt = not any(re.search(p, path) for p in la_patterns)
  return dict(**hp, use_layer_adaptation=adapt)


def _lamb_call_op(op, var, slots, grad, *, use_layer_adaptation=True, **kwargs):
  m, v = slots
  return op(var, m, v, grad, use_layer_adaptation=use_layer_adaptation,
            **kwargs)


def _lamb_call_raw_op(raw_op, handles, grad, **kwargs):
  var, m, v = handles
  return raw_op(absmax=[], rounding_key=[], var=var, m=m, v=v, grad=grad,
                use_layer_adaptation=True, **kwargs)


LAMB = AlgorithmSpec(
    name="lamb",
    reference=R.lamb_step,
    call_reference=_lamb_call_reference,
    slots=_lamb_slots,
    options=dict(use_layer_adaptation=True),
    keras_hp=_lamb_keras_hp,
    keras_classes=("Lamb",),
    keras_defaults=dict(beta_1=0.9, beta_2=0.999, epsilon=1e-6),
    op_class="Lamb",
    call_op=_lamb_call_op,
    multi_tensor=True,
    call_raw_op=_lamb_call_raw_op,
    state_layouts=True,
    unsigned_slots=("v",),
    op_cases={
        "rank2-adaptive": (dict(use_layer_adaptation=True), (7, 5), 10),
        "rank3-no-adaptation":
            (dict(use_layer_adaptation=False), (3, 4, 6), 11),
    },
    op_defaults=dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                     weight_decay_rate=0.01),
    fuzz_hyper=dict(beta_1=(0.9, 0.0), beta_2=(0.999, 0.5),
                    epsilon=(1e-6, 0.0, 1e-3), weight_decay_rate=(0.0, 0.01)),
    keras_cases=dict(
        slot_names={"lamb": ("Lamb", {})},
        every_argument={
            "lamb": ("Lamb",
                     dict(learning_rate=0.003, beta_1=0.7, beta_2=0.9,
                          epsilon=1e-4, weight_decay_rate=_COSINE_SCHEDULE,
                          exclude_from_weight_decay=["bias", "norm"],
                          exclude_from_layer_adaptation=["^emb"], clipvalue=0.5,
                          fused=True)),
        },
        configs={
            "lamb": ("Lamb", dict(learning_rate=0.01), {}, {}),
            "lamb-decay-exclusions":
                ("Lamb",
                 dict(learning_rate=0.01, weight_decay_rate=0.05,
                      exclude_from_weight_decay=["bias", "gamma$"]),
                 dict(weight_decay_rate=0.05,
                      exclude_from_weight_decay=["bias", "gamma$"]), {}),
            "lamb-adaptation-exclusions":
                ("Lamb",
                 dict(learning_rate=0.01, weight_decay_rate=0.05,
                      exclude_from_weight_decay=["bias"],
                      exclude_from_layer_adaptation=["^norm/", "conv"]),
                 dict(weight_decay_rate=0.05,
                      exclude_from_weight_decay=["bias"],
                      exclude_from_layer_adaptation=["^norm/", "conv"]), {}),
            "lamb-keras-weight-decay":
                ("Lamb", dict(learning_rate=0.01,
                              weight_decay=0.1), {}, dict(weight_decay=0.1)),
        },
        schedules={"lamb": ("Lamb", {})},
        single_step={"lamb": ("Lamb", [-0.3693, 0.6306, 1.6306, 2.6306])},
        goldens={"lamb": ("Lamb", {}, G.LAMB)},
        # Keras's Lamb defaults to epsilon 1e-7, ours (and
        # the Model Garden's) to 1e-6.
        keras_parity={
            "lamb": ("Lamb", dict(learning_rate=0.01), dict(epsilon=1e-6))
        },
        sparse={
            "lamb": ("Lamb", dict(learning_rate=0.01, weight_decay_rate=0.01))
        },
        fit={
            "lamb": ("Lamb",
                     dict(learning_rate=0.01, weight_decay_rate=0.01,
                          exclude_from_weight_decay=["bias"]), "Lamb",
                     dict(learning_rate=0.01))
        },
        mixed_precision={
            "lamb": ("Lamb", dict(learning_rate=0.01, weight_decay_rate=0.01))
        },
        keras_file={
            "lamb": ("Lamb",
                     dict(learning_rate=0.01, weight_decay_rate=0.01,
                          exclude_from_weight_decay=["bias"]))
        },
        checkpoint={
            "lamb": ("Lamb", dict(learning_rate=0.01, weight_decay_rate=0.1))
        },
        dtensor={
            "lamb": ("Lamb",
                     dict(learning_rate=0.01, weight_decay_rate=0.01,
                          exclude_from_weight_decay=["bias"]))
        },
    ))


# ----------------------------------------------------------------------------
# Adafactor
# ----------------------------------------------------------------------------
def _adafactor_slots(shape, relative_step=True):
  del relative_step  # same slots either way
  shapes = R.adafactor_accumulator_shapes(shape)
  names = ("row", "col") if len(shapes) == 2 else ("v",)
  return list(zip(names, shapes))


def _adafactor_call_reference(reference, w, slots, g, *, step, **kwargs):
  return reference(w, tuple(slots), g, step=step, **kwargs)


def _adafactor_keras_hp(hp, path, fused_decay):
  del path, fused_decay  # Keras decays Adafactor's variables outside its step
  return hp


def _adafactor_call_op(op, var, slots, grad, *, relative_step=True, **kwargs):
  return op(var, tuple(slots), grad, relative_step=relative_step, **kwargs)


def _adafactor_call_raw_op(raw_op, handles, grad, **kwargs):
  return raw_op(var=handles[0], accumulators=list(handles[1:]), grad=grad,
                relative_step=True, **kwargs)


ADAFACTOR = AlgorithmSpec(
    name="adafactor",
    reference=R.adafactor_step,
    call_reference=_adafactor_call_reference,
    slots=_adafactor_slots,
    options=dict(relative_step=True),
    keras_hp=_adafactor_keras_hp,
    keras_classes=("Adafactor",),
    keras_defaults=dict(beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                        clip_threshold=1.0, relative_step=True),
    op_class="Adafactor",
    call_op=_adafactor_call_op,
    call_raw_op=_adafactor_call_raw_op,
    op_cases={
        # lr = 0.2: relative_step switches from lr to 1/sqrt(t) at t = 25.
        "rank2": (dict(relative_step=True, learning_rate=0.2), (7, 5), 30),
        "rank3": (dict(relative_step=True, learning_rate=0.2), (3, 4, 6), 31),
        "rank1": (dict(relative_step=True, learning_rate=0.2), (11,), 32),
    },
    op_defaults=dict(learning_rate=0.2, beta_2_decay=-0.8, epsilon_1=1e-30,
                     epsilon_2=1e-3, clip_threshold=1.0),
    slot_list="accumulators",
    fuzz_hyper=dict(beta_2_decay=(-0.8, -0.5), epsilon_1=(1e-30, 1e-10),
                    epsilon_2=(1e-3, 0.0), clip_threshold=(1.0, 0.5)),
    keras_cases=dict(
        every_argument={
            "adafactor": ("Adafactor",
                          dict(learning_rate=0.02, beta_2_decay=-0.5,
                               epsilon_1=1e-20, epsilon_2=1e-2,
                               clip_threshold=2.0, relative_step=False,
                               clipnorm=1.0)),
        },
        configs={
            "adafactor": ("Adafactor", dict(learning_rate=0.01), {}, {}),
            "adafactor-constant-step":
                ("Adafactor",
                 dict(learning_rate=0.5, relative_step=False,
                      clip_threshold=0.5, beta_2_decay=-0.6),
                 dict(beta_2_decay=-0.6, clip_threshold=0.5,
                      relative_step=False), {}),
        },
        # A schedule sets the learning rate only with a constant step.
        schedules={"adafactor": ("Adafactor", dict(relative_step=False))},
        single_step={
            "adafactor": ("Adafactor", [-0.3693, 0.6307, 1.6307, 2.6307])
        },
        goldens={"adafactor": ("Adafactor", G.ADAFACTOR_HP, G.ADAFACTOR)},
        keras_parity={"adafactor": ("Adafactor", dict(learning_rate=0.01), {})},
        tf_keras_parity={"adafactor": ("Adafactor", dict(learning_rate=0.01))},
        sparse={"adafactor": ("Adafactor", dict(learning_rate=0.01))},
        # Keras's Adafactor turns the first layer's weights into NaN on digits
        # (constant-zero pixels and dead units, defect 9): it is only the bar
        # where it trains, so its accuracy floor is taken from Adam's instead.
        fit={
            "adafactor": ("Adafactor", dict(learning_rate=0.01), "Adam",
                          dict(learning_rate=0.003))
        },
        mixed_precision={"adafactor": ("Adafactor", dict(learning_rate=0.05))},
        keras_file={"adafactor": ("Adafactor", dict(learning_rate=0.05))},
        checkpoint={"adafactor": ("Adafactor", dict(learning_rate=0.05))},
        dtensor={"adafactor": ("Adafactor", dict(learning_rate=0.01))},
    ))


# ----------------------------------------------------------------------------
# Lion (no step count)
# ----------------------------------------------------------------------------
def _lion_slots(shape):
  return [("m", shape)]


def _lion_call_reference(reference, w, slots, g, *, step, **hp):
  del step  # Lion has no step count
  w, m = reference(w, slots[0], g, **hp)
  return w, (m,)


def _lion_keras_hp(hp, path, fused_decay):
  del path
  return dict(**hp, weight_decay=fused_decay)  # the op applies Keras's decay


def _lion_call_op(op, var, slots, grad, *, step, **kwargs):
  del step  # the op takes none
  return op(var, slots[0], grad, **kwargs)


def _lion_call_raw_op(raw_op, handles, grad, **kwargs):
  var, m = handles
  return raw_op(absmax=[], rounding_key=[], var=var, m=m, grad=grad, **kwargs)


LION = AlgorithmSpec(
    name="lion", reference=R.lion_step, call_reference=_lion_call_reference,
    slots=_lion_slots, keras_hp=_lion_keras_hp, keras_classes=("Lion",),
    keras_decays_in_step=True, keras_defaults=dict(beta_1=0.9, beta_2=0.99),
    op_class="Lion", call_op=_lion_call_op, counts_steps=False,
    multi_tensor=True, call_raw_op=_lion_call_raw_op, state_layouts=True,
    op_cases={
        "rank2": (dict(), (7, 5), 0),
        "rank3-no-decay": (dict(weight_decay=0.0), (3, 4, 6), 1),
        "strong-decay": (dict(weight_decay=0.5, beta_1=0.5,
                              beta_2=0.9), (11,), 2),
    }, op_defaults=dict(learning_rate=0.01, beta_1=0.9, beta_2=0.99,
                        weight_decay=0.01),
    fuzz_hyper=dict(beta_1=(0.9, 0.0), beta_2=(0.99, 0.0),
                    weight_decay=(0.0, 0.01)),
    keras_cases=dict(
        slot_names={"lion":
            ("Lion", {})},
        every_argument={
            "lion": ("Lion",
                     dict(_EVERY_BASE_ARGUMENT, learning_rate=_COSINE_SCHEDULE,
                          beta_1=0.95, beta_2=0.98, weight_decay=0.05,
                          name="my_lion")),
        },
        configs={
            "lion": ("Lion", dict(learning_rate=0.01), {}, {}),
            "lion-weight-decay": ("Lion",
                                  dict(learning_rate=0.01, beta_1=0.8,
                                       beta_2=0.95, weight_decay=0.1),
                                  dict(beta_1=0.8,
                                       beta_2=0.95), dict(weight_decay=0.1)),
        },
        schedules={"lion": ("Lion", {})},
        single_step={"lion": ("Lion", [0.5, 1.5, 2.5, 3.5])},
        goldens={"lion": ("Lion", {}, G.LION)},
        keras_parity={
            "lion": ("Lion", dict(learning_rate=0.01, weight_decay=0.1), {})
        },
        tf_keras_parity={
            "lion": ("Lion", dict(learning_rate=0.01, weight_decay=0.1))
        },
        sparse={"lion": ("Lion", dict(learning_rate=0.01, weight_decay=0.1))},
        fit={
            "lion": ("Lion", dict(learning_rate=0.001,
                                  weight_decay=0.01), "Lion",
                     dict(learning_rate=0.001, weight_decay=0.01))
        },
        mixed_precision={"lion": ("Lion", dict(learning_rate=0.005))},
        keras_file={
            "lion": ("Lion", dict(learning_rate=0.005, weight_decay=0.1))
        },
        checkpoint={
            "lion": ("Lion", dict(learning_rate=0.005, weight_decay=0.1))
        },
        dtensor={"lion": ("Lion", dict(learning_rate=0.01, weight_decay=0.1))},
    ))

# name -> entry, in the order the docs list the algorithms.
ALGORITHMS = {a.name: a for a in (SGD, ADAMW, LAMB, LION, ADAFACTOR)}


def get(name):
  """The entry named `name` or with `name` among its aliases."""
  for algorithm in ALGORITHMS.values():
    if name == algorithm.name or name in algorithm.aliases:
      return algorithm
  raise KeyError(f"no algorithm {name!r} in tests/support/algorithms.py "
                 f"(known: {sorted(ALGORITHMS)})")


def with_fused_op():
  """The entries with a fused op, in registry order."""
  return [a for a in ALGORITHMS.values() if a.op is not None]


def with_state_layouts():
  """The entries whose ops take reduced-precision state, in registry order."""
  return [a for a in ALGORITHMS.values() if a.state_layouts]


def op_hp(name, **overrides):
  """The op tests' hyperparameters of algorithm `name` (its `op_defaults`),
  with `overrides`."""
  return dict(get(name).op_defaults, **overrides)


def for_keras_class(class_name):
  """The entry whose `keras_classes` hold `class_name` ("Adam" -> AdamW's)."""
  for algorithm in ALGORITHMS.values():
    if class_name in algorithm.keras_classes:
      return algorithm
  raise KeyError(f"no algorithm follows the Keras class {class_name!r}")


def keras_classes():
  """Every class name of tf_opt_plugin.optimizers the registry knows, in
  registry order."""
  return [
      c for algorithm in ALGORITHMS.values() for c in algorithm.keras_classes
  ]


def keras_cases(table):
  """{case id: case} of `table` over every entry, in registry order.

  The tables (each case names a class of tf_opt_plugin.optimizers, looked up
  in the front end under test, that is one of the entry's `keras_classes`,
  and its constructor keyword arguments):
    configs: (class, kwargs, reference hyperparameters, extra reference_run
      arguments): 50 steps against the float64 reference
      (optimizer_configs.py).
    schedules: (class, options): learning rate and weight decay schedules,
      with `options` passed to both the class and the reference.
    single_step: (class, expected): Keras 3's test_single_step at
      learning_rate 0.5.
    goldens: (class, kwargs, trajectory): Keras 3's
      test_correctness_with_golden (keras_goldens.py).
    keras_parity: (class, kwargs, extra kwargs of Keras's class): equal to
      keras.optimizers' class of the same name.
    tf_keras_parity: (class, kwargs): equal to tf_keras.optimizers' class.
    fit: (class, kwargs, Keras class, its kwargs): fit() reaches the Keras
      class's accuracy.
    every_argument: (class, kwargs): every argument away from its default,
      a schedule as its Keras config; the serialization round trips.
    slot_names: (class, kwargs): slots named and ordered as in Keras's class
      of that name, every slot switched on (Adafactor's are factored: tests
      of their own).
    sparse, mixed_precision, keras_file, checkpoint, dtensor: (class,
      kwargs): the optimizers of those tests.
  """
  cases = {}
  for algorithm in ALGORITHMS.values():
    for case_id, case in algorithm.keras_cases.get(table, {}).items():
      if case_id in cases:
        raise ValueError(f"keras_cases[{table!r}]: {case_id!r} twice")
      # No class is held to another algorithm's reference by a slip.
      if case[0] not in algorithm.keras_classes:
        raise ValueError(f"keras_cases[{table!r}][{case_id!r}]: {case[0]} "
                         f"does not follow the {algorithm.name!r} reference")
      cases[case_id] = case
  return cases
