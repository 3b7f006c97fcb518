"""The optimizer configurations every front end is tested with.

Each entry names the class (looked up in the front end under test), its
constructor arguments, and the float64 reference (`keras_harness.Algorithm`,
an entry of the registry in algorithms.py, plus the extra `reference_run`
arguments) it must follow.
"""

import numpy as np

import keras_harness as H

# id -> (optimizer class name, constructor arguments, reference algorithm,
#        extra reference_run arguments)
CONFIGS = {
    "sgd": ("SGD", dict(learning_rate=0.05), H.Algorithm("sgd"), {}),
    "sgd-momentum": ("SGD", dict(learning_rate=0.05,
                                 momentum=0.9), H.Algorithm("sgd",
                                                            momentum=0.9), {}),
    "sgd-nesterov": ("SGD", dict(learning_rate=0.05,
                                 momentum=0.9,
                                 nesterov=True),
                     H.Algorithm("sgd", momentum=0.9, nesterov=True), {}),
    "sgd-weight-decay": ("SGD", dict(learning_rate=0.05, weight_decay=0.1),
                         H.Algorithm("sgd"), dict(weight_decay=0.1)),
    "adam": ("Adam", dict(learning_rate=0.01), H.Algorithm("adam"), {}),
    "adam-amsgrad": ("Adam", dict(learning_rate=0.01, amsgrad=True),
                     H.Algorithm("adam", amsgrad=True), {}),
    "adam-weight-decay": ("Adam", dict(learning_rate=0.01, weight_decay=0.05),
                          H.Algorithm("adam"), dict(weight_decay=0.05)),
    "adamw": ("AdamW",
              dict(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
              H.Algorithm("adam", beta_1=0.8, beta_2=0.99,
                          epsilon=1e-6), dict(weight_decay=0.004)),
    "adamw-amsgrad":
        ("AdamW", dict(learning_rate=0.01, weight_decay=0.1, amsgrad=True),
         H.Algorithm("adam", amsgrad=True), dict(weight_decay=0.1)),
    "lamb": ("Lamb", dict(learning_rate=0.01), H.Algorithm("lamb"), {}),
    "lamb-decay-exclusions":
        ("Lamb",
         dict(learning_rate=0.01,
              weight_decay_rate=0.05,
              exclude_from_weight_decay=["bias", "gamma$"]),
         H.Algorithm("lamb",
                     weight_decay_rate=0.05,
                     exclude_from_weight_decay=["bias", "gamma$"]), {}),
    "lamb-adaptation-exclusions":
        ("Lamb",
         dict(learning_rate=0.01,
              weight_decay_rate=0.05,
              exclude_from_weight_decay=["bias"],
              exclude_from_layer_adaptation=["^norm/", "conv"]),
         H.Algorithm("lamb",
                     weight_decay_rate=0.05,
                     exclude_from_weight_decay=["bias"],
                     exclude_from_layer_adaptation=["^norm/", "conv"]), {}),
    "lamb-keras-weight-decay": ("Lamb",
                                dict(learning_rate=0.01, weight_decay=0.1),
                                H.Algorithm("lamb"), dict(weight_decay=0.1)),
    "adafactor":
        ("Adafactor", dict(learning_rate=0.01), H.Algorithm("adafactor"), {}),
    "adafactor-constant-step": ("Adafactor",
                                dict(learning_rate=0.5,
                                     relative_step=False,
                                     clip_threshold=0.5,
                                     beta_2_decay=-0.6),
                                H.Algorithm("adafactor",
                                            beta_2_decay=-0.6,
                                            clip_threshold=0.5,
                                            relative_step=False), {}),
    "lion": ("Lion", dict(learning_rate=0.01), H.Algorithm("lion"), {}),
    "lion-weight-decay": ("Lion",
                          dict(learning_rate=0.01,
                               beta_1=0.8,
                               beta_2=0.95,
                               weight_decay=0.1),
                          H.Algorithm("lion", beta_1=0.8,
                                      beta_2=0.95), dict(weight_decay=0.1)),
}


def _check_classes():
  """Each configuration's class is one its reference's registry entry lists
  (`keras_classes` in algorithms.py), so no class is held to another
  algorithm's reference by a slip in the table above."""
  for config, (class_name, _, algorithm, _) in CONFIGS.items():
    if class_name not in algorithm.spec.keras_classes:
      raise ValueError(f"CONFIGS[{config!r}]: {class_name} does not follow "
                       f"the {algorithm.spec.name!r} reference")


_check_classes()


def reference_learning_rate(kwargs):
  """The learning rate as the optimizers hold it (a float32 variable)."""
  return float(np.float32(kwargs["learning_rate"]))


def reference(config, w0, grads):
  """The float64 trajectory the optimizer of configuration `config` follows
  from weights `w0` under `grads` (keras_harness.random_problem)."""
  _, kwargs, algorithm, extra = CONFIGS[config]
  return H.reference_run(algorithm,
                         w0,
                         grads,
                         learning_rate=reference_learning_rate(kwargs),
                         **extra)
