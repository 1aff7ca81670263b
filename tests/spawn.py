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
