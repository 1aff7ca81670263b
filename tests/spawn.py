"""Run a test's worker in several spawned processes, each in one gloo group, and fail the test
when any rank fails.

``worker(rank, *args)`` runs in every process after it has joined the group (through a
rendezvous file in the test's folder); ``args`` (data, a result folder) are passed on to every
rank. What goes wrong in a rank is sent back to the test, which fails with it.
"""

import torch.distributed as dist
import torch.multiprocessing as mp


def _in_gloo_group(rank: int, init_file: str, failures, world: int, worker, *args) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        worker(rank, *args)
    except Exception as err:  # reported back to the parent, which fails the test
        failures.put(f"rank {rank}: {err!r}")
        raise
    finally:
        dist.destroy_process_group()


def run_workers(worker, tmp_path, world: int = 2, args: tuple = ()) -> None:
    failures = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(_in_gloo_group, args=(str(tmp_path / "rendezvous"), failures, world, worker, *args),
                       nprocs=world, start_method="spawn", join=True)
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
