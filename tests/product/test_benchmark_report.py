"""Smoke test of `python -m tf_opt_plugin.benchmark` at tiny sizes (not a measurement),
and the bookkeeping of its reduced-precision state rows and memory table."""

import math

import pytest

from tf_opt_plugin.benchmark import __main__ as report
from tf_opt_plugin.benchmark import bert_base_shapes


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
  assert "AdamW: float32 / 8-bit state" in out
  assert "Keras has no reduced-precision optimizer state" in out
  markdown = (tmp_path / "report.md").read_text()
  assert "| op step | AdamW: Keras / fused |" in markdown
  assert "| adamw: bfloat16 |" in markdown
  assert "## Optimizer state memory" in markdown
  assert "| int8 |" in markdown
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


def _expected_adamw_state_bytes(shapes, state_dtype):
  """Two slots per variable: 4 or 2 bytes per element, or (int8, 4096 elements and more)
  one code byte per element and a float32 absmax per block of 256."""
  total = 0
  for _, shape in shapes:
    size = math.prod(shape)
    if state_dtype == "float32" or (state_dtype == "int8" and size < 4096):
      total += 2 * 4 * size
    elif state_dtype == "bfloat16":
      total += 2 * 2 * size
    else:
      total += 2 * (size + 4 * math.ceil(size / 256))
  return total


def test_state_memory_counts_the_slot_variables_built():
  from tf_opt_plugin.benchmark import state_memory
  shapes = bert_base_shapes.TINY_SHAPES
  rows = state_memory.measure(shapes)
  for row in rows:
    assert row["bytes"] == _expected_adamw_state_bytes(shapes,
                                                       row["state_dtype"])
  ratios = state_memory.ratios(rows)
  assert ratios["bfloat16"] == 0.5
  assert 0.25 < ratios["int8"] <= state_memory.INT8_MAX_RATIO
  int8 = next(r for r in rows if r["state_dtype"] == "int8")
  # codes and absmax of the 4 large variables, float32 slots of the 7 small ones
  assert set(int8["by_dtype"]) == {"uint8", "float32"}
  assert int8["variables"] == 2 * 2 * 4 + 2 * 7


def test_state_memory_bound_holds_for_bert_base():
  # The bound on the full variable set (the benchmark measures it from the slots).
  shapes = bert_base_shapes.BERT_BASE_SHAPES
  ratio = (_expected_adamw_state_bytes(shapes, "int8") /
           _expected_adamw_state_bytes(shapes, "float32"))
  assert 0.25 < ratio <= 0.27


@pytest.mark.parametrize(
    "algorithm, layout, size, expected",
    [
        # (variable reads + writes + gradient) * 4 + slot accesses * bytes
        ("adamw", "float32", 1000, 28 * 1000),
        ("adamw", "bfloat16", 5000, 12 * 5000 + 2 * 2 * 2 * 5000),
        ("adamw", "int8", 5000, 12 * 5000 + 2 * 2 * (5000 + 4 * 20)),
        ("adamw", "int8", 4095, 28 * 4095),  # small: float32 state
        ("lamb", "float32", 1000, 40 * 1000),
        ("lamb", "bfloat16", 4096, 16 * 4096 + 2 * 3 * 2 * 4096),
        ("lamb", "int8", 4096, 16 * 4096 + 2 * 3 * (4096 + 4 * 16)),
        ("lion", "float32", 1000, 20 * 1000),
        ("lion", "int8", 8192, 12 * 8192 + 2 * (8192 + 4 * 32)),
    ])
def test_state_bytes_floor(algorithm, layout, size, expected):
  from tf_opt_plugin.benchmark import ops
  assert ops.layout_bytes(algorithm, layout, size) == expected
  if layout == "float32":
    assert expected == ops.BYTES_PER_PARAM[algorithm](2) * size


def test_state_targets_pass_and_fail():
  from tf_opt_plugin.benchmark import ops
  results = {
      "fused_adamw": {
          "median": 1.0
      },
      "fused_adamw_bf16": {
          "median": 0.79
      },
      "fused_adamw_int8": {
          "median": 0.75
      },
      "fused_lamb": {
          "median": 2.0
      },
  }
  floors = {"adamw:bfloat16": (0.7, 0), "adamw:int8": (0.5, 0)}
  verdicts = {
      d: (r, v) for d, r, _, _, v in ops.evaluate_targets(results, floors)
  }
  assert verdicts["fused AdamW, bfloat16 / float32 state"] == (0.79, "PASS")
  assert verdicts["fused AdamW, int8 / float32 state"] == (0.75, "FAIL")
  assert verdicts["fused AdamW, int8 state / its bytes floor"][1] == "FAIL"
  assert verdicts["fused AdamW, bfloat16 state / its bytes floor"][1] == "PASS"
  assert verdicts["fused Lamb, bfloat16 / float32 state"] == (None, "SKIP")
