"""Smoke test of the training demo (`python -m tf_opt_plugin.demo`), at tiny sizes."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_opt_plugin import demo

TINY = [
    "--steps", "16", "--width", "32", "--heads", "2", "--layers", "1",
    "--seq-len", "16", "--batch-size", "8", "--eval-batches", "2",
    "--skip-steps", "2", "--max-text-mb", "0.3", "--quiet"
]


@pytest.mark.slow
def test_demo_trains_prints_table_and_writes_png(tmp_path, capsys):
  pytest.importorskip("matplotlib")
  code, runs = demo.main(
      TINY + ["--optimizers", "adamw,sgd", "--output-dir",
              str(tmp_path)])
  assert code == 0
  out = capsys.readouterr().out
  table = out[out.index("ms/step ours"):]
  for name in ("AdamW", "SGD"):
    assert any(line.startswith(name + " ") for line in table.splitlines()), out
  assert "Lamb" not in table
  for state_dtype in ("bfloat16", "int8"):
    assert any(
        line.startswith(f"AdamW, {state_dtype} state ")
        for line in table.splitlines()), out
  assert "SGD, " not in table  # only AdamW and Lamb run with reduced state
  assert set(runs) == {("adamw", "ours"), ("adamw", "keras"),
                       ("adamw", "ours:bfloat16"), ("adamw", "ours:int8"),
                       ("sgd", "ours"), ("sgd", "keras")}
  for run in runs.values():
    losses = np.array(run["losses"])
    assert len(losses) == 16 and np.all(np.isfinite(losses)), run["label"]
    assert losses[-4:].mean() < losses[:4].mean(), run["label"]
    assert run["step_ms"] > 0 and np.isfinite(run["eval_loss"])
    assert 0 <= run["eval_accuracy"] <= 1
  # AdamW is the same update on both sides (up to the embedding's sparse gradient).
  assert abs(runs[("adamw", "ours")]["eval_loss"] -
             runs[("adamw", "keras")]["eval_loss"]) < 0.1
  # The state column counts the slots: m and v of every variable, float32 on both
  # sides, half of it in bfloat16; in 8 bits one byte per element and a float32
  # absmax per block of 256 for variables of 4096 elements or more, float32 below.
  sizes = [
      math.prod(v.shape)
      for v in demo.make_model(16, 32, 1, 2, 0).trainable_variables
  ]
  float32_bytes = sum(2 * 4 * n for n in sizes)
  int8_bytes = sum(
      2 * (n + 4 * math.ceil(n / 256)) if n >= 4096 else 8 * n for n in sizes)
  assert any(n >= 4096 for n in sizes)  # something is quantized
  assert runs[("adamw", "ours")]["state_bytes"] == float32_bytes
  assert runs[("adamw", "keras")]["state_bytes"] == float32_bytes
  assert runs[("adamw", "ours:bfloat16")]["state_bytes"] == float32_bytes // 2
  assert runs[("adamw", "ours:int8")]["state_bytes"] == int8_bytes
  # Reduced state trains like float32 state (16 tiny steps: within 5%).
  for state_dtype in ("bfloat16", "int8"):
    loss = runs[("adamw", "ours:" + state_dtype)]["eval_loss"]
    assert abs(loss / runs[("adamw", "ours")]["eval_loss"] - 1) < 0.05
  with open(tmp_path / "demo.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(tmp_path / "demo.png") > 10_000
  markdown = (tmp_path / "results.md").read_text()
  assert "| AdamW |" in markdown and "| SGD |" in markdown
  assert "| AdamW, int8 state |" in markdown
  saved = json.loads((tmp_path / "results.json").read_text())
  assert len(saved["runs"]) == 6


@pytest.mark.subprocess
def test_demo_help_and_bad_arguments():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-m", "tf_opt_plugin.demo", "--help"],
      capture_output=True, text=True, env=env, timeout=120, check=True)
  for flag in ("--optimizers", "--steps", "--output-dir", "--batch-size",
               "--seq-len"):
    assert flag in result.stdout
  with pytest.raises(SystemExit):
    demo.parse_args(["--optimizers", "rmsprop"])
  with pytest.raises(SystemExit):
    demo.parse_args(["--steps", "1"])
  with pytest.raises(SystemExit):
    demo.parse_args(["--state-dtypes", "int4"])
  assert demo.parse_args(["--state-dtypes", ""]).state_dtypes == []
  assert demo.parse_args([]).state_dtypes == ["bfloat16", "int8"]


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
  from tf_opt_plugin.benchmark import _plotting
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  with pytest.raises(SystemExit, match=r"tf_opt_plugin\[demo\]"):
    _plotting.pyplot()


def test_stdlib_text_is_deterministic():
  a = demo.stdlib_text(max_bytes=100_000)
  b = demo.stdlib_text(max_bytes=100_000)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  x, y = demo.windows(a[0], 3, 8, seed=1)
  assert x.shape == y.shape == (3, 8)
  np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
