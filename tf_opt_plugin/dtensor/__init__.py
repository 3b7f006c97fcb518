"""The optimizers on DTensor meshes: `tf_opt_plugin.dtensor.Adam(mesh=mesh)`.

The classes are the tf-keras optimizers (`tf_opt_plugin.optimizers.tf_keras`,
the API of `tf.keras.dtensor.experimental.optimizers`) with a required
`mesh`:

  * slots are DVariables with the layout of their model variable; Adafactor's
    row and column accumulators keep the variable's sharding of the axes they
    do not reduce; `iterations` and the learning rate are replicated;
  * updates run the pure-TF twins (a custom op has no DTensor layout
    propagation, not even on fully replicated inputs inside a tf.function),
    so LAMB's trust ratio and Adafactor's RMS use the global norms of the
    sharded variable;
  * `build()` raises a ValueError naming the variable when a variable is not
    a DVariable on `mesh`.

Importing this module (or giving any tf-keras optimizer here a `mesh`) sets
DTENSOR_ENABLE_COMBINE_ALL_REDUCES_OPTIMIZATION=0 unless the environment
already sets it: with the optimization on, TF 2.21
lets a slot update read a stale slot when several gradients need a batch
all-reduce (docs/keras_defects.md), which tf-keras's own DTensor SGD and Adam
suffer from. Needs the `tf-keras` package.
"""

from tf_opt_plugin.optimizers import _registry
from tf_opt_plugin.optimizers import tf_keras as _tf_keras
from tf_opt_plugin.optimizers.tf_keras._base import COMBINE_ALL_REDUCES_ENV
from tf_opt_plugin.optimizers.tf_keras._base import guard_stale_slots

guard_stale_slots()


class _OnMesh:
  """Makes `mesh` a required argument of a tf-keras optimizer."""

  def __init__(self, *args, mesh=None, **kwargs):
    if mesh is None:
      raise ValueError(
          f"`mesh` must be a `tf.experimental.dtensor.Mesh` for "
          f"tf_opt_plugin.dtensor.{type(self).__name__}. Received: mesh=None "
          f"(use tf_opt_plugin.optimizers.tf_keras.{type(self).__name__} "
          "without a mesh)")
    super().__init__(*args, mesh=mesh, **kwargs)


# `class Adam(_OnMesh, tf_keras.Adam)`, for every algorithm of the registry.
_registry.define_classes(globals(), lambda name, _:
                         (_OnMesh, getattr(_tf_keras, name)))

__all__ = [*_registry.NAMES, "COMBINE_ALL_REDUCES_ENV"]
