"""Run a test's worker in several spawned processes and fail the test when any rank fails.

``worker(rank, init_file, failures, *args)`` joins the gloo group through ``file://{init_file}``
and puts a message on ``failures`` before re-raising whatever went wrong in it; ``args`` (data,
a result folder) are passed on to every rank.
"""

import torch.multiprocessing as mp


def run_workers(worker, tmp_path, world: int = 2, args: tuple = ()) -> None:
    failures = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(worker, args=(str(tmp_path / "rendezvous"), failures, *args), nprocs=world,
                       start_method="spawn", join=True)
    assert failures.empty(), failures.get()


def project_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child ``python`` that must import the project from its checkout:
    the project's root first on PYTHONPATH, the entries already there kept after it (an offline GPU
    machine, for one, finds its carried packages through PYTHONPATH), plus ``extra``."""
    import os
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
