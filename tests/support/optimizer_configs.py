"""The optimizer configurations every front end is tested with.

Each entry names the class (looked up in the front end under test), its
constructor arguments, and the float64 reference (`keras_harness.Algorithm`,
an entry of the registry in algorithms.py, plus the extra `reference_run`
arguments) it must follow.
"""

import numpy as np

import algorithms as A
import keras_harness as H

# id -> (optimizer class name, constructor arguments, reference algorithm,
#        extra reference_run arguments), from the registry's "configs" tables.
CONFIGS = {
    config: (class_name, kwargs,
             H.Algorithm(A.for_keras_class(class_name).name, **hp), extra)
    for config, (class_name, kwargs, hp,
                 extra) in A.keras_cases("configs").items()
}


def reference_learning_rate(kwargs):
  """The learning rate as the optimizers hold it (a float32 variable)."""
  return float(np.float32(kwargs["learning_rate"]))


def reference(config, w0, grads):
  """The float64 trajectory the optimizer of configuration `config` follows
  from weights `w0` under `grads` (keras_harness.random_problem)."""
  _, kwargs, algorithm, extra = CONFIGS[config]
  return H.reference_run(algorithm, w0, grads,
                         learning_rate=reference_learning_rate(kwargs), **extra)
