"""The optimizer algorithms: one line each, every front end's classes built
from this table.

Each front end (Keras 3 in `keras3/`, tf-keras in `tf_keras/`, DTensor meshes
in `tf_opt_plugin.dtensor`) calls `define_classes` once, which defines in the
front end's module, for every row of `ALGORITHMS`, the class

    class <Name>(<algorithm mixin>, <front end's base>):
      __doc__ = <the mixin's docstring>

a real class with that `__name__` and `__qualname__`, living in (and pickled
by reference to) the front end's module, registered for model loading where
the front end registers. `tf_opt_plugin` and `tf_opt_plugin.optimizers`
export `NAMES`. Adding an algorithm is one row here (after its mixin).
"""

from tf_opt_plugin.optimizers import adafactor
from tf_opt_plugin.optimizers import adam
from tf_opt_plugin.optimizers import adamw
from tf_opt_plugin.optimizers import lamb
from tf_opt_plugin.optimizers import lion
from tf_opt_plugin.optimizers import sgd

# (public class name, algorithm mixin over `_host.AlgorithmHost`).
ALGORITHMS = (
    ("SGD", sgd.SGDAlgorithm),
    ("Adam", adam.AdamAlgorithm),
    ("AdamW", adamw.AdamWAlgorithm),
    ("Lamb", lamb.LambAlgorithm),
    ("Adafactor", adafactor.AdafactorAlgorithm),
    ("Lion", lion.LionAlgorithm),
)

NAMES = tuple(name for name, _ in ALGORITHMS)


def define_classes(namespace, bases, register=None):
  """Defines one optimizer class per algorithm in a front end's module.

  Args:
    namespace: the front end module's `globals()`; each class is stored
      there under its name, with that module as its `__module__`.
    bases: `bases(name, algorithm)` returns the class's bases, in MRO order
      (`(algorithm, Optimizer)` for a front end's base `Optimizer`).
    register: None, or a class decorator applied to each class (Keras's
      `register_keras_serializable(package=...)`).
  """
  for name, algorithm in ALGORITHMS:
    cls = type(
        name, bases(name, algorithm), {
            "__doc__": algorithm.__doc__,
            "__module__": namespace["__name__"],
            "__qualname__": name,
        })
    namespace[name] = cls if register is None else register(cls)
