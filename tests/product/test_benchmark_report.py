"""Smoke test of `python -m tf_opt_plugin.benchmark` at tiny sizes (not a measurement)."""

import pytest

from tf_opt_plugin.benchmark import __main__ as report


@pytest.mark.slow
def test_benchmark_report_tiny(tmp_path, capsys):
  pytest.importorskip("matplotlib")
  code = report.main([
      "--tiny", "--only", "adamw", "--ops-steps", "2", "--ops-warmup", "1",
      "--fit-steps", "2", "--fit-warmup", "1", "--fit-optimizers", "AdamW",
      "--output-dir",
      str(tmp_path)
  ])
  assert code == 0
  out = capsys.readouterr().out
  assert "AdamW: Keras / fused" in out
  assert "AdamW: Keras / ours, whole step" in out
  markdown = (tmp_path / "report.md").read_text()
  assert "| op step | AdamW: Keras / fused |" in markdown
  assert "## A whole fit() step" in markdown
  with open(tmp_path / "report.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_benchmark_help(capsys):
  with pytest.raises(SystemExit) as exit_info:
    report.main(["--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for flag in ("--output-dir", "--skip-ops", "--skip-fit", "--tiny"):
    assert flag in out
