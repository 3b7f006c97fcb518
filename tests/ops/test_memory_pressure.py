"""Every fused op fails cleanly when memory runs out.

A child process (`tests/support/memory_pressure_worker.py`) caps its own
address space (RLIMIT_AS) at what it uses plus 32 MiB, after TensorFlow and
the variables exist and a small step of the op has run, then asks each op
for one allocation larger than that: a copy of a 64 MiB variable whose
buffer a read still holds (each per-variable op of tests/support/
algorithms.py, and each multi-tensor op with the large variable last), or a
factored algorithm's scratch for a 1 x 16M variable (three buffers of its
column count). Each must raise ResourceExhaustedError, leave every variable
and slot byte for byte as it was, and not kill the process. Controls run
under the same cap and must update: without them a cap that broke everything
would pass.
"""

import json
import subprocess

import pytest

import algorithms as A
import subprocess_helpers

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

LARGE = 16 * 2**20  # elements of the large variable: 64 MiB of float32
SMALL = (3, 5)
TIMEOUT_S = 600


def _factored(spec):
  """Whether the algorithm's slots of a matrix are smaller than it."""
  return any(s != (2, 3) for s in spec.slot_shapes((2, 3)))


def _add(table, name, spec, form, shapes, hold_read):
  table[name] = dict(name=name, algorithm=spec.name, form=form, shapes=shapes,
                     hold_read=hold_read)


def _scenarios():
  """(scenarios that must run out of memory, controls that must update),
  each {name: the worker's description}.

  Each op's update needs one allocation of the large variable's size or more.
  A copy of a variable whose buffer a read holds (every op copies before
  writing); in a list the large variable is the last, so the small ones
  before it are validated (and, held by no read, not copied) before the
  large copy fails. A factored algorithm copies nothing but needs scratch of
  about three times a wide variable's column count: one row of LARGE.
  """
  exhausted, controls = {}, {}
  multi = [spec for spec in A.with_fused_op() if spec.multi_tensor]
  for spec in A.with_fused_op():
    if _factored(spec):
      _add(exhausted, f"{spec.name}_wide", spec, "single", [(1, LARGE)], False)
      _add(controls, f"{spec.name}_small", spec, "single", [(4, 1000)], False)
    else:
      _add(exhausted, spec.name, spec, "single", [(LARGE,)], True)
  for spec in multi:
    _add(exhausted, f"multi_tensor_{spec.name}", spec, "multi",
         [SMALL, (7,), (LARGE,)], True)
  # Under the same cap, small updates (a copy included) run.
  _add(controls, f"multi_tensor_{multi[0].name}_small", multi[0], "multi",
       [SMALL, (7,), (1000,)], True)
  return exhausted, controls


EXHAUSTED, CONTROLS = _scenarios()


def _run_worker(names):
  """{scenario: result} for `names`; a scenario whose START line is not
  followed by its result crashed the worker."""
  scenarios = [json.dumps(dict(EXHAUSTED, **CONTROLS)[n]) for n in names]
  process = subprocess.run(
      subprocess_helpers.command("memory_pressure_worker.py", *scenarios),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
      env=subprocess_helpers.environment(),
  )
  results, started = {}, None
  for line in process.stdout.splitlines():
    if line.startswith("START "):
      started = line.split(" ", 1)[1]
    elif line.startswith(subprocess_helpers.RESULT_PREFIX):
      result = json.loads(line[len(subprocess_helpers.RESULT_PREFIX):])
      results[result["scenario"]] = result
      started = None
  if started is not None:
    results[started] = {
        "scenario": started,
        "outcome": "crash",
        "returncode": process.returncode,
        "message": subprocess_helpers.tail(process.stderr),
    }
  elif process.returncode != 0:
    raise RuntimeError(
        f"memory_pressure_worker.py exited with {process.returncode}:\n" +
        subprocess_helpers.tail(process.stderr))
  return results


@pytest.fixture(scope="module")
def results():
  """All scenarios, one worker process; after a crash, a new worker runs the
  scenarios that had not run."""
  names = list(EXHAUSTED) + list(CONTROLS)
  found = {}
  while names:
    batch = _run_worker(names)
    found.update(batch)
    names = [n for n in names if n not in found]
    if names and not batch:
      raise RuntimeError(f"no result for {names}")
  return found


@pytest.mark.parametrize("scenario", list(EXHAUSTED))
def test_running_out_of_memory_is_a_clean_error(results, scenario):
  result = results[scenario]
  assert result["outcome"] != "crash", (
      f"the process died (returncode {result['returncode']}):\n"
      f"{result['message']}")
  assert result["outcome"] == "error", (
      "the update ran under the cap: the test no longer exhausts memory")
  assert result["type"] == "ResourceExhaustedError", result
  assert "OOM" in result["message"], result["message"]
  assert result["changed"] == [], (
      f"{result['changed']} changed although the update raised")


@pytest.mark.parametrize("scenario", list(CONTROLS))
def test_a_small_update_runs_under_the_same_cap(results, scenario):
  result = results[scenario]
  assert result["outcome"] == "ok", result
  assert result["changed"], "the update wrote nothing"
