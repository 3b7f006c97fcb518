"""Every fused op and its twin against the float64 reference over 100 steps.

The cases are the registry's (`op_cases` of each entry of
tests/support/algorithms.py), run in every dtype and mode of op_harness: the
whole trajectory compared for float32 / float64, each step from the same state
for the half types.
"""

import pytest

import op_harness as H

CASES = [(name, case)
         for name, adapter in H.ADAPTERS.items()
         for case in adapter.spec.op_cases]


@pytest.mark.parametrize("mode", H.MODES)
@pytest.mark.parametrize("dtype", list(H.DTYPES))
@pytest.mark.parametrize("algo_name,case", CASES,
                         ids=[f"{name}-{case}" for name, case in CASES])
def test_matches_reference_100_steps(algo_name, case, dtype, mode):
  adapter = H.ADAPTERS[algo_name]
  kwargs, shape, seed = adapter.spec.op_cases[case]
  H.run_and_compare(adapter(**kwargs), shape, dtype, mode, steps=100, seed=seed)
