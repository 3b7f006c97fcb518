"""Smoke test of the training demo (`python -m tf_opt_plugin.demo`), at tiny sizes."""

import json
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
  assert set(runs) == {("adamw", "ours"), ("adamw", "keras"), ("sgd", "ours"),
                       ("sgd", "keras")}
  for run in runs.values():
    losses = np.array(run["losses"])
    assert len(losses) == 16 and np.all(np.isfinite(losses)), run["label"]
    assert losses[-4:].mean() < losses[:4].mean(), run["label"]
    assert run["step_ms"] > 0 and np.isfinite(run["eval_loss"])
    assert 0 <= run["eval_accuracy"] <= 1
  # AdamW is the same update on both sides (up to the embedding's sparse gradient).
  assert abs(runs[("adamw", "ours")]["eval_loss"] -
             runs[("adamw", "keras")]["eval_loss"]) < 0.1
  with open(tmp_path / "demo.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(tmp_path / "demo.png") > 10_000
  markdown = (tmp_path / "results.md").read_text()
  assert "| AdamW |" in markdown and "| SGD |" in markdown
  saved = json.loads((tmp_path / "results.json").read_text())
  assert len(saved["runs"]) == 4


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
