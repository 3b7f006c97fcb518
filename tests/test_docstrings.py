"""The examples in the public docstrings run and print what they say."""

import doctest

import pytest
import tensorflow as tf

from tf_opt_plugin.ops import _dispatch
from tf_opt_plugin.ops import adafactor
from tf_opt_plugin.ops import adamw
from tf_opt_plugin.ops import lamb


@pytest.mark.parametrize("module", [adamw, lamb, adafactor, _dispatch],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, extraglobs={"tf": tf}, verbose=False)
  assert result.attempted > 0, f"{module.__name__} has no examples"
  assert result.failed == 0
