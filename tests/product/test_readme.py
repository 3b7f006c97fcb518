"""The README's quick start runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_quick_start_runs():
  pytest.importorskip("sklearn")
  text = README.read_text()
  section = text[text.index("\n## Quick start\n"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  assert len(code.strip().splitlines()) == 5
  namespace = {}
  exec(compile(code, str(README), "exec"), namespace)  # pylint: disable=exec-used
  history = namespace["model"].history.history
  assert history["accuracy"][-1] > 0.8, history
