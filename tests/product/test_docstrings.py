"""The examples in the public docstrings run and print what they say.

Every public class and function (`tf_opt_plugin.__all__`, `tf_opt_plugin.ops.__all__`,
`tf_opt_plugin.optimizers.__all__`, the demo and the benchmark helpers) has a docstring,
and, except for the names in PENDING_EXAMPLES, an example that runs.
"""

import doctest
import importlib
import inspect

import pytest
import tensorflow as tf

import algorithms as A
import tf_opt_plugin
from tf_opt_plugin import ops
from tf_opt_plugin import optimizers

# Modules whose docstring examples are run as a whole (each must have some).
MODULES = [f"tf_opt_plugin.ops.{name}" for name in A.ALGORITHMS] + [
    "tf_opt_plugin.ops._dispatch",
    "tf_opt_plugin.demo",
    "tf_opt_plugin.benchmark.bert_base_shapes",
    # The tf-keras front end, whose names are public only under
    # TF_USE_LEGACY_KERAS=1.
    pytest.param("tf_opt_plugin.optimizers.tf_keras._base",
                 marks=pytest.mark.needs_tf_keras)
]

# Public names that have a docstring but no example yet. Remove a name here when
# its example lands.
PENDING_EXAMPLES = set()


def _public_objects():
  seen = {}
  for namespace in (tf_opt_plugin, ops, optimizers):
    for name in namespace.__all__:
      value = getattr(namespace, name)
      if inspect.isclass(value) or inspect.isfunction(value):
        seen.setdefault(name, value)
  return sorted(seen.items())


def _run_examples(obj, name):
  finder = doctest.DocTestFinder(recurse=False)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  # The names of the object's own module, as `doctest.testmod` would see them.
  globs = dict(vars(inspect.getmodule(obj)))
  globs.update(tf=tf, tf_opt_plugin=tf_opt_plugin,
               keras=importlib.import_module("keras"))
  attempted = 0
  for test in finder.find(obj, name, globs=globs):
    result = runner.run(test)
    assert result.failed == 0, f"{name}: {result.failed} example(s) failed"
    attempted += result.attempted
  return attempted


@pytest.mark.parametrize("module_name", MODULES)
def test_module_examples(module_name):
  module = importlib.import_module(module_name)
  result = doctest.testmod(module, extraglobs={"tf": tf}, verbose=False,
                           optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0, f"{module_name} has no examples"
  assert result.failed == 0


@pytest.mark.parametrize("name,obj", _public_objects(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_public_api_documented(name, obj):
  assert inspect.getdoc(obj), f"{name} has no docstring"
  if not obj.__module__.startswith("tf_opt_plugin."):
    # Re-exported from Keras (tf-keras's LossScaleOptimizer under
    # TF_USE_LEGACY_KERAS=1): its examples are Keras's to test.
    return
  attempted = _run_examples(obj, name)
  if name not in PENDING_EXAMPLES:
    assert attempted > 0, f"{name}'s docstring has no example"
