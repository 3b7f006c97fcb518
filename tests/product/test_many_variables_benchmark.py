"""Smoke tests of the many-variables and XLA first-step benchmarks (tiny
sizes: not measurements)."""

import pytest

from tf_opt_plugin.benchmark import __main__ as report
from tf_opt_plugin.benchmark import many_variables
from tf_opt_plugin.benchmark import xla_compile


def test_many_variables_curve(capsys):
  args = many_variables.build_parser().parse_args(
      ["--counts", "20,40", "--steps", "2", "--warmup", "1"])
  result = many_variables.run(args)
  assert [row["n"] for row in result["rows"]] == [20, 40]
  for row in result["rows"]:
    assert 0 < row["op"] < row["call"], row  # the call runs the op
    assert row["first"] > 0
  out = capsys.readouterr().out
  assert "op: us/variable" in out and "growth" in out
  lines = result["markdown"].splitlines()
  assert lines[2].startswith("| variables |")
  assert lines[4].startswith("| 20 |") and lines[5].startswith("| 40 |")


def test_many_variables_growth_is_relative_to_linear():
  rows = [
      {
          "n": 100,
          "op": 1e-3,
          "call": 2e-3,
          "first": 1.0
      },
      {
          "n": 400,
          "op": 8e-3,
          "call": 4e-3,
          "first": 2.0
      },
  ]
  (_, _, second) = many_variables.format_table(rows, markdown=True)[1:4]
  cells = [c.strip() for c in second.strip("|").split("|")]
  # op: 8x the time for 4x the variables; call: 2x.
  assert cells[3] == "2.00" and cells[6] == "0.50", cells
  assert cells[2] == "20.00", cells  # us per variable


def test_many_variables_restores_the_grappler_options():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  before = tf.config.optimizer.get_experimental_options()
  many_variables.run(
      many_variables.build_parser().parse_args(
          ["--counts", "10", "--steps", "1", "--warmup", "1"]),
      log=lambda *_: None,
  )
  assert tf.config.optimizer.get_experimental_options() == before


@pytest.mark.slow
def test_report_with_many_variables_and_xla_compile(tmp_path):
  code = report.main([
      "--tiny",
      "--skip-ops",
      "--skip-fit",
      "--many-variables",
      "--xla-compile",
      "--no-plot",
      "--output-dir",
      str(tmp_path),
  ])
  assert code == 0
  markdown = (tmp_path / "report.md").read_text()
  assert "## One multi-tensor AdamW step over N tiny variables" in markdown
  assert "| 100 |" in markdown and "| 400 |" in markdown
  assert "## First step under jit_compile=True" in markdown
  assert "| 20 |" in markdown and "| 40 |" in markdown


def test_xla_first_step_counts_both_sides(capsys):
  result = xla_compile.run(xla_compile.build_parser().parse_args(
      ["--variables", "3", "--rounds", "1", "--count-ops"]))
  (row,) = result["rows"]
  for side in xla_compile.SIDES:
    assert row[side]["trace"] > 0 and row[side]["compile"] > 0, row
    graph_ops, hlo = row["counts"][side]
    assert graph_ops > 1 and hlo > 1, row
  lines = result["markdown"].splitlines()
  assert lines[2].startswith("| variables |") and lines[4].startswith("| 3 |")
  assert "ours / Keras" in capsys.readouterr().out
