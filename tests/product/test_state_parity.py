"""Training parity of reduced-precision state (issue 16): the quick mode of
`tf_opt_plugin.benchmark.state_parity` on digits, AdamW and Lamb with
bfloat16 and 8-bit state within 2% of float32 state's held-out loss."""

import numpy as np
import pytest

from tf_opt_plugin.benchmark import state_parity


@pytest.fixture(scope="module")
def quick():
  args = state_parity.build_parser().parse_args(["--quick"])
  return state_parity.run(args, log=lambda *_: None)


def _row(result, optimizer, state):
  (row,) = [
      r for r in result["rows"]
      if r["optimizer"] == optimizer and r["state"] == state
  ]
  return row


# Measured (10 epochs, lr 1e-3): Lamb with 8-bit state ends 6.2% (narrow
# MLP, seed 0 and the mean of 3 seeds) and 3.2% (wide MLP, 3 seeds) above
# float32 state's held-out loss, every seed worse; AdamW and bfloat16 state
# pass. The criterion is the and stays; strict, so a fix shows here.
LAMB_INT8 = pytest.mark.xfail(
    strict=True, reason="issue 16: Lamb with 8-bit state misses the 2% "
    "criterion on digits (held-out loss 1.062x float32 state's)")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,state", [
    ("AdamW", "bfloat16"),
    ("AdamW", "int8"),
    ("Lamb", "bfloat16"),
    pytest.param("Lamb", "int8", marks=LAMB_INT8),
])
def test_reduced_state_within_two_percent_of_float32(quick, optimizer, state):
  base = _row(quick, optimizer, "float32")
  row = _row(quick, optimizer, state)
  assert base["accuracy"] > 0.9, base  # it trained
  # Recomputed from the losses, not read from the row's verdict.
  assert row["loss"] <= 1.02 * base["loss"], (row, base)
  assert row["passed"]


@pytest.mark.slow
def test_quick_mode_compares_different_runs(quick):
  # The state dtype really changed the storage (else the comparison above
  # could not fail): 8-bit codes hold the 64x64 kernel's moments, and every
  # reduced run ends at a loss other than float32 state's.
  assert len(quick["rows"]) == 6
  assert quick["passed"] == all(row["passed"] for row in quick["rows"])
  for optimizer in ("AdamW", "Lamb"):
    base = _row(quick, optimizer, "float32")
    assert base["eight_bit"] == 0
    assert _row(quick, optimizer, "bfloat16")["eight_bit"] == 0
    assert _row(quick, optimizer,
                "int8")["eight_bit"] == pytest.approx(4096 / 4810)
    for state in ("bfloat16", "int8"):
      assert _row(quick, optimizer, state)["loss"] != base["loss"]
  lines = quick["markdown"].splitlines()
  assert lines[2].startswith("| model | optimizer | state |")
  verdict = "PASS" if quick["passed"] else "FAIL"
  assert verdict + ": every reduced state" in quick["markdown"]


def test_digits_split_is_fixed_and_standardized():
  (x, y), (x_test, y_test) = state_parity.load_data()
  assert x.shape == (1437, 64) and x_test.shape == (360, 64)
  assert x.dtype == np.float32 and y.dtype == np.int32
  varying = x.std(axis=0) > 0
  np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
  np.testing.assert_allclose(x.std(axis=0)[varying], 1, rtol=1e-4)
  assert not x[:, ~varying].any()
  assert sorted(set(y_test.tolist())) == list(range(10))
  (x2, _), (x2_test, _) = state_parity.load_data()
  assert np.array_equal(x, x2) and np.array_equal(x_test, x2_test)


def test_criterion_and_table():
  assert state_parity.passes(1.02, 1.0) and state_parity.passes(0.5, 1.0)
  assert not state_parity.passes(1.0201, 1.0)
  assert state_parity.parameter_count((64,)) == 4810
  assert state_parity.parameter_count((256, 256)) == 85002
  rows = [
      dict(model="wide", optimizer="Lamb", state="int8", loss=0.0625,
           ratio=1.03, accuracy=0.98, eight_bit=81920 / 85002, passed=False)
  ]
  (_, _, line) = state_parity.format_table(rows, markdown=True)
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells == [
      "wide 64-256-256-10", "Lamb", "int8", "96.4%", "0.0625", "1.0300",
      "0.9800", "FAIL"
  ]


def test_bad_model_name_is_refused(capsys):
  with pytest.raises(SystemExit):
    state_parity.build_parser().parse_args(["--models", "narrow,huge"])
  assert "--models" in capsys.readouterr().err
