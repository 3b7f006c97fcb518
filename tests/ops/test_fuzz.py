"""Fuzz test of the op wrappers, the raw ops and the optimizers.

A fixed list of cases (`tests/support/fuzz_cases.py`, seed `SEED`): random
ranks, shapes (empty and wide ones too), dtypes, devices, NaN / Inf / huge /
subnormal values, sparse gradients, and in about half of them one fault: a
wrong shape or dtype, an integer variable, a variable passed as its own slot
or twice, an uninitialised slot, `step` < 1, a vector hyperparameter, lists
of different lengths, an out-of-range sparse index, a multi-tensor op given
two dtypes. Each case runs eagerly, in a tf.function or under XLA.

Every case must end in one of two ways:
  * success (required when nothing is wrong);
  * a typed error (InvalidArgumentError, FailedPreconditionError, ValueError,
    TypeError; FusedOpUnavailableError for fused=True) whose message names
    the offending input, with every variable, slot and optimizer variable
    byte for byte as before the call.
A crash (the worker process dies) or a hang fails its case.

The cases run in a pool of worker processes (`fuzz_worker.py`), each
importing TensorFlow once and running many cases; when one dies, the case it
was running is reported as a crash and a new worker takes over. All cases
run once per session, on first use; each test checks one case's result.
"""

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import fuzz_cases
import subprocess_helpers

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

WORKERS = max(1, min(2, os.cpu_count() or 1))
CASE_TIMEOUT_S = 120  # a case that takes longer hangs
ALLOWED_ERRORS = (
    "tensorflow.python.framework.errors_impl.InvalidArgumentError",
    "tensorflow.python.framework.errors_impl.FailedPreconditionError",
    "builtins.ValueError",
    "builtins.TypeError",
)
FUSED_UNAVAILABLE = "tf_opt_plugin.ops._dispatch.FusedOpUnavailableError"

CASES = fuzz_cases.cases()

# Findings not fixed yet: {case id: reason}. Each is expected to fail
# (strict: a case that starts passing fails until it leaves this list).
KNOWN_FAILURES = {}


# ----------------------------------------------------------------------------
# The worker pool.
# ----------------------------------------------------------------------------
class _Worker:
  """One `fuzz_worker.py` process; stderr goes to a file (read on a crash)."""

  def __init__(self):
    self.stderr = tempfile.TemporaryFile(mode="w+")
    self.process = subprocess.Popen(
        subprocess_helpers.command("fuzz_worker.py"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=self.stderr,
        text=True,
        env=subprocess_helpers.environment(),
    )
    line = self._read_line(CASE_TIMEOUT_S)
    if line.strip() != "READY":
      raise RuntimeError("fuzz worker did not start:\n" + self.stderr_tail() +
                         line)

  def _read_line(self, timeout):
    timer = threading.Timer(timeout, self.process.kill)
    timer.start()
    try:
      while True:
        line = self.process.stdout.readline()
        if (not line or line.startswith(subprocess_helpers.RESULT_PREFIX) or
            (line.strip() == "READY")):
          return line
    finally:
      timer.cancel()

  def stderr_tail(self):
    self.stderr.seek(0)
    return subprocess_helpers.tail(self.stderr.read(), 2000)

  def run(self, case):
    """The case's result dict; a dead worker gives outcome "crash"."""
    start = time.perf_counter()
    try:
      self.process.stdin.write(json.dumps(case) + "\n")
      self.process.stdin.flush()
    except (BrokenPipeError, OSError):
      pass
    line = self._read_line(CASE_TIMEOUT_S)
    if line.startswith(subprocess_helpers.RESULT_PREFIX):
      return json.loads(line[len(subprocess_helpers.RESULT_PREFIX):])
    self.process.wait()
    seconds = time.perf_counter() - start
    return {
        "id":
            case["id"],
        "outcome":
            "crash",
        "returncode":
            self.process.returncode,
        "seconds":
            seconds,
        "message": ("hang (killed after %d s)" %
                    CASE_TIMEOUT_S if seconds >= CASE_TIMEOUT_S else "") +
                   self.stderr_tail(),
    }

  def alive(self):
    return self.process.poll() is None

  def close(self):
    if self.alive():
      self.process.stdin.close()
      try:
        self.process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self.stderr.close()


def run_cases(cases, workers=WORKERS):
  """{case id: result} of `cases`, run by a pool of `workers` processes."""
  pending = queue.Queue()
  for case in cases:
    pending.put(case)
  results = {}
  lock = threading.Lock()
  errors = []

  def serve():
    worker = None
    try:
      while True:
        try:
          case = pending.get_nowait()
        except queue.Empty:
          return
        if worker is None or not worker.alive():
          if worker is not None:
            worker.close()
          worker = _Worker()
        result = worker.run(case)
        with lock:
          results[case["id"]] = result
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)
    finally:
      if worker is not None:
        worker.close()

  threads = [threading.Thread(target=serve) for _ in range(workers)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  if errors:
    raise errors[0]
  return results


@pytest.fixture(scope="session")
def fuzz_results(request):
  """The results of every fuzz case selected in this session, run once."""
  selected = [
      item.callspec.params["case"]["id"]
      for item in request.session.items
      if getattr(item, "originalname", "") == "test_fuzz_case" and
      hasattr(item, "callspec")
  ]
  wanted = set(selected) or {c["id"] for c in CASES}
  start = time.perf_counter()
  results = run_cases([c for c in CASES if c["id"] in wanted])
  print(
      "\nfuzz: %d cases in %.1f s with %d workers" %
      (len(results), time.perf_counter() - start, WORKERS),
      file=sys.stderr,
  )
  return results


# ----------------------------------------------------------------------------
# The checks.
# ----------------------------------------------------------------------------
def _mentions(message, names):
  return any(
      re.search(r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(n), message)
      for n in names)


def check_result(case, result):
  """Asserts the contract of the module docstring for one case."""
  description = json.dumps({k: v for k, v in case.items() if k != "id"})
  outcome = result["outcome"]
  assert outcome != "crash", (
      f"the worker died (returncode {result.get('returncode')}) running "
      f"{description}\n{result.get('message', '')}")
  assert outcome != "harness_error", result["message"]
  if outcome == "ok":
    assert case["expect"] != "error", (
        f"accepted an invalid input ({case['fault']}): {description}")
    return
  allowed = ALLOWED_ERRORS + ((FUSED_UNAVAILABLE,) if case["fused"] else ())
  message = result["message"]
  assert set(result["mro"]) & set(allowed), (
      f"{result['type']} is not one of the typed errors: {message}\n{description}"
  )
  if result["type"] != FUSED_UNAVAILABLE:
    assert case["expect"] != "ok", (
        f"rejected a valid input with {result['type']}: {message}\n{description}"
    )
    assert _mentions(message, case["names"]), (
        f"the message names none of {case['names']}: {message}\n{description}")
  assert not result["written"], (
      f"{result['written']} changed although the call raised "
      f"{result['type']}: {message}\n{description}")


def _param(case):
  marks = []
  if case["id"] in KNOWN_FAILURES:
    marks.append(
        pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case["id"]]))
  return pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_fuzz_case(case, fuzz_results):
  check_result(case, fuzz_results[case["id"]])


# ----------------------------------------------------------------------------
# The harness itself.
# ----------------------------------------------------------------------------
def test_cases_are_fixed_and_cover_every_fault_and_target():
  again = fuzz_cases.cases()
  assert again == CASES  # the seed fixes them
  assert len({c["id"] for c in CASES}) == len(CASES) == fuzz_cases.NUM_CASES
  kinds = {c["fault"]["kind"] for c in CASES if c["fault"]}
  assert kinds == set(fuzz_cases.FAULTS)
  for key in ("target", "mode", "expect"):
    values = {c[key] for c in CASES}
    assert len(values) >= 3, (key, values)
  assert {(c["target"], c["algorithm"])
          for c in CASES
          if c["target"] != ("optimizer")} >= {
              (t, a) for t in ("wrapper", "raw") for a in fuzz_cases.ALGORITHMS
          }
  assert {c["algorithm"] for c in CASES if c["target"] == "optimizer"
         } == set(fuzz_cases.OPTIMIZERS)


def test_the_pool_reports_a_dead_worker_as_a_crash_and_goes_on():
  # A case whose worker kills itself, then two ordinary ones: the pool must
  # report the first as a crash and still run the others on a new worker.
  crash = {"id": "crash", "target": "crash"}
  ok = [c for c in CASES if c["expect"] == "ok" and c["mode"] == "eager"][:2]
  results = run_cases([crash] + ok, workers=1)
  assert results["crash"]["outcome"] == "crash", results["crash"]
  for case in ok:
    assert results[case["id"]]["outcome"] == "ok", results[case["id"]]


def test_check_result_rejects_each_kind_of_violation():
  ok_case = next(c for c in CASES if c["expect"] == "ok")
  bad_case = next(c for c in CASES if c["expect"] == "error")
  error = {
      "outcome": "error",
      "type": ALLOWED_ERRORS[0],
      "mro": [ALLOWED_ERRORS[0]],
      "written": [],
      "message": "`%s` is wrong" % bad_case["names"][0],
  }
  check_result(bad_case, error)  # the contract
  check_result(ok_case, {"outcome": "ok"})
  violations = [
      (ok_case, {
          "outcome": "crash",
          "returncode": -11
      }),
      (bad_case, {
          "outcome": "ok"
      }),
      (ok_case, error),
      (bad_case, dict(error, message="something is wrong")),
      (
          bad_case,
          dict(error, type="builtins.RuntimeError",
               mro=["builtins.RuntimeError"]),
      ),
      (bad_case, dict(error, written=["var[0]"])),
  ]
  for case, result in violations:
    with pytest.raises(AssertionError):
      check_result(case, result)
