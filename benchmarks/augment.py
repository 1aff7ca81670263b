"""Augmentation speed: the batched SimCLR policy and the RL crop against the usual baselines.

Prints one JSON line per measurement:

1. ``simclr_batched``: :func:`core_ssl.augment.simclr_augment` (32 px, CIFAR recipe: colour
   strength 0.5, no blur, CIFAR mean/std) on real CIFAR-10 train images held as one uint8
   tensor; every batch is gathered by shuffled indices and augmented twice (two views).
   ``images_per_s`` counts images, not views. Contiguous (NCHW) and channels-last input.
2. ``torchvision_per_sample``: the per-image PIL pipeline lightly and solo-learn use
   (RandomResizedCrop, flip, ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2, ToTensor,
   Normalize), applied twice per image in a DataLoader (batch ``--batch``, shuffled) with 0 and
   with 2 workers. Timed after the first batch (worker start-up excluded).
3. ``rl_crop``: :func:`core_ssl.augment.random_crop` of uint8 (B, 9, 100, 100) frame stacks to
   84 x 84, three crops per batch (CURL crops obs, next_obs and the positive), against the
   official CURL numpy crop (``skimage.util.view_as_windows`` + fancy indexing). Median ms;
   ``ours_out_buffers`` writes into preallocated outputs (``random_crop(..., out=buf)``).
4. ``rl_sample_crop``: the whole of CURL's replay sampling, ``obs = store[idx]``,
   ``next_obs = next_store[idx]``, ``pos = obs.copy()`` then the three crops (official code),
   against ``random_crop(store, 84, indices=idx)`` three times, which crops straight from the
   storage without materialising ``store[idx]``. Storage of ``--replay`` frame stacks.
5. ``backend_policy`` / ``backend_rl``: the native ops against the ``kornia`` backend
   (``backend="kornia"``: kornia.augmentation modules, same distributions) for every policy
   (SimCLR CIFAR recipe, SimCLR with strength 1 and blur, MoCo v1, MoCo v2, BYOL's two views;
   batches of CIFAR-10 images) and for the RL crop and shift on uint8 (B, 9, 100, 100) frame
   stacks. Calls alternate between the backends; median ms per batch and the ratio
   kornia / native. These numbers choose ``core_ssl.augment.backends.DEFAULT_BACKENDS``;
   ``--device cuda`` runs this part on a GPU.

The machines this runs on may be shared, so every comparison is interleaved: 1 and 2 run in
rounds (one pass of each configuration per round) and 3 alternates the implementations call
by call; each line reports the median over rounds, and ``speedup`` lines the median of the
per-round ratios. Run ``python benchmarks/augment.py --help`` for the options; the defaults
take about two minutes on two idle CPU cores.

On a CPU shared with other busy processes, OpenMP's default spin-waiting makes multi-threaded
torch ops stall (threads spin at every barrier while the thread they wait for is descheduled;
measured here: 10x slower). So this script sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads
unless the variable is already set or ``--spin-wait`` is given; the value used is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Must precede the first import of torch, which reads it once (see the docstring).
if "--spin-wait" not in sys.argv[1:]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import add_device_argument, device_facts, select_device, timed  # noqa: E402
from core_ssl.augment import (byol_augment_pair, mocov1_augment, mocov2_augment, random_crop,  # noqa: E402
                              random_shift, simclr_augment)

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def emit(record: dict) -> None:
    record.setdefault("torch_threads", torch.get_num_threads())
    print(json.dumps(record), flush=True)


def load_train_images(count: int, data_root: str | None) -> torch.Tensor:
    """``count`` CIFAR-10 train images (uint8, N x 3 x 32 x 32), a fixed random subset."""
    from core_ssl.data import load_cifar10

    images = load_cifar10("train", root=data_root).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:count]
    return images[order].contiguous()


# ------------------------------------------------------------------------------ 1. batched policy


def batched_pass(images: torch.Tensor, batch: int, generator: torch.Generator) -> float:
    """Images per second of one shuffled pass, two views per image."""
    aug = simclr_augment(32, mean=CIFAR_MEAN, std=CIFAR_STD)
    n_batches = len(images) // batch
    order = torch.randperm(len(images), generator=generator)
    start = time.perf_counter()
    for i in range(n_batches):
        x = images[order[i * batch:(i + 1) * batch]]
        view1, view2 = aug(x, generator), aug(x, generator)
    return n_batches * batch / (time.perf_counter() - start)


# ------------------------------------------------------------------ 2. per-sample torchvision


class TwoViewDataset(torch.utils.data.Dataset):
    """PIL images in memory, each returned as two independently transformed views."""

    def __init__(self, images: torch.Tensor, transform) -> None:
        from PIL import Image

        self.images = [Image.fromarray(a) for a in images.permute(0, 2, 3, 1).numpy()]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = self.images[index]
        return self.transform(image), self.transform(image)


def torchvision_dataset(images: torch.Tensor) -> TwoViewDataset:
    import torchvision.transforms as T

    transform = T.Compose([
        T.RandomResizedCrop(32, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
        T.ToTensor(),
        T.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])
    return TwoViewDataset(images, transform)


def torchvision_pass(dataset: TwoViewDataset, batch: int, workers: int, seed: int) -> float:
    """Images per second of one pass through a DataLoader, after its first batch."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    batches = iter(loader)
    next(batches)  # first batch: worker start-up, not timed
    start = time.perf_counter()
    count = sum(1 for _ in batches)
    return count * batch / (time.perf_counter() - start)


def bench_policies(images: torch.Tensor, tv_images: torch.Tensor, batch: int, rounds: int,
                   parts: set[str]) -> None:
    generator = torch.Generator().manual_seed(0)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    dataset = torchvision_dataset(tv_images) if "torchvision" in parts else None
    if "batched" in parts:
        batched_pass(images, batch, generator)  # warm-up
    runs: dict[str, list[float]] = {}
    for round_index in range(rounds):
        if "batched" in parts:
            runs.setdefault("batched_contiguous", []).append(batched_pass(images, batch, generator))
            runs.setdefault("batched_channels_last", []).append(batched_pass(channels_last, batch, generator))
        if dataset is not None:
            for workers in (0, 2):
                speed = torchvision_pass(dataset, batch, workers, seed=round_index)
                runs.setdefault(f"torchvision_workers{workers}", []).append(speed)
    for name, speeds in runs.items():
        if name.startswith("batched"):
            record = {"bench": "simclr_batched", "layout": name.removeprefix("batched_"),
                      "dtype_in": "uint8", "dtype_out": "float32", "images": len(images) // batch * batch}
        else:
            record = {"bench": "torchvision_per_sample", "workers": int(name[-1]),
                      "images": (len(tv_images) // batch - 1) * batch}
        record.update({"size": 32, "batch": batch, "views_per_image": 2, "rounds": rounds,
                       "images_per_s": round(statistics.median(speeds), 1),
                       "per_round": [round(s, 1) for s in speeds]})
        emit(record)
    for baseline in ("torchvision_workers0", "torchvision_workers2"):
        if "batched_contiguous" in runs and baseline in runs:
            ratios = [a / b for a, b in zip(runs["batched_contiguous"], runs[baseline])]
            emit({"bench": "speedup", "ours": "simclr_batched contiguous", "baseline": baseline,
                  "median_ratio": round(statistics.median(ratios), 2)})


# ----------------------------------------------------------------------------------- 3. RL crop


def curl_numpy_crop(imgs: np.ndarray, output_size: int) -> np.ndarray:
    """The official CURL crop (utils.random_crop), verbatim."""
    from skimage.util.shape import view_as_windows

    n = imgs.shape[0]
    img_size = imgs.shape[-1]
    crop_max = img_size - output_size
    imgs = np.transpose(imgs, (0, 2, 3, 1))
    w1 = np.random.randint(0, crop_max, n)
    h1 = np.random.randint(0, crop_max, n)
    windows = view_as_windows(imgs, (1, output_size, output_size, 1))[..., 0, :, :, 0]
    return windows[np.arange(n), w1, h1]


def bench_rl_crop(batch: int, repeats: int, crops: int = 3) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (batch, 9, 100, 100), dtype=np.uint8) for _ in range(crops)]
    tensors = [torch.from_numpy(f) for f in frames]
    buffers = [torch.empty(batch, 9, 84, 84, dtype=torch.uint8) for _ in range(crops)]
    generator = torch.Generator().manual_seed(0)
    np.random.seed(0)
    candidates = {
        "curl_numpy": lambda: [curl_numpy_crop(f, 84) for f in frames],
        "ours": lambda: [random_crop(t, 84, generator) for t in tensors],
        "ours_out_buffers": lambda: [random_crop(t, 84, generator, out=o) for t, o in zip(tensors, buffers)],
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for repeat in range(repeats + 1):
        for name, fn in candidates.items():
            seconds = timed(fn)
            if repeat > 0:  # the first call of each is a warm-up
                times[name].append(seconds)
    for name, seconds in times.items():
        emit({"bench": "rl_crop", "impl": name, "batch": batch, "in_shape": [9, 100, 100], "size": 84,
              "dtype": "uint8", "crops": crops, "repeats": repeats,
              "median_ms": round(1e3 * statistics.median(seconds), 3)})


def bench_rl_sample_crop(batch: int, capacity: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    obs_store = rng.integers(0, 256, (capacity, 9, 100, 100), dtype=np.uint8)
    next_store = rng.integers(0, 256, (capacity, 9, 100, 100), dtype=np.uint8)
    obs_tensor, next_tensor = torch.from_numpy(obs_store), torch.from_numpy(next_store)
    generator = torch.Generator().manual_seed(0)

    def curl() -> tuple:  # ReplayBuffer.sample_cpc of the official code
        idxs = np.random.randint(0, capacity, size=batch)
        obses, next_obses = obs_store[idxs], next_store[idxs]
        pos = obses.copy()
        return curl_numpy_crop(obses, 84), curl_numpy_crop(next_obses, 84), curl_numpy_crop(pos, 84)

    def ours() -> tuple:  # all three crops stay alive until the end, as in the update step
        idx = torch.randint(capacity, (batch,), generator=generator)
        return (random_crop(obs_tensor, 84, generator, indices=idx),
                random_crop(next_tensor, 84, generator, indices=idx),
                random_crop(obs_tensor, 84, generator, indices=idx))

    times: dict[str, list[float]] = {"curl_numpy": [], "ours": []}
    for repeat in range(repeats + 1):
        for name, fn in (("curl_numpy", curl), ("ours", ours)):
            seconds = timed(fn)
            if repeat > 0:
                times[name].append(seconds)
    for name, seconds in times.items():
        emit({"bench": "rl_sample_crop", "impl": name, "batch": batch, "capacity": capacity,
              "in_shape": [9, 100, 100], "size": 84, "crops": 3, "repeats": repeats,
              "median_ms": round(1e3 * statistics.median(seconds), 3)})


# -------------------------------------------------------------------------- 5. native vs kornia


def _alternate(candidates: dict, repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each candidate, calls alternating, the first call of each untimed;
    on CUDA each call is synchronised on both sides (:func:`benchmarks.reference.timed`)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for repeat in range(repeats + 1):
        for name, fn in candidates.items():
            seconds = timed(fn, 1, device)
            if repeat > 0:
                times[name].append(seconds)
    return times


def bench_backends(images: torch.Tensor, batch: int, repeats: int, device: torch.device) -> None:
    """Every policy and the RL crop/shift on both backends, one batch per call, on ``device``
    (random draws from a CPU generator in both backends)."""
    policies = {
        "simclr_cifar": lambda b: [simclr_augment(32, mean=CIFAR_MEAN, std=CIFAR_STD, backend=b)],
        "simclr_s1_blur": lambda b: [simclr_augment(32, color_strength=1.0, blur=True, backend=b)],
        "mocov1": lambda b: [mocov1_augment(32, backend=b)],
        "mocov2": lambda b: [mocov2_augment(32, backend=b)],
        "byol_two_views": lambda b: list(byol_augment_pair(32, backend=b)),
    }
    generator = torch.Generator().manual_seed(0)
    x = images[:batch].to(device)
    for name, build in policies.items():
        built = {backend: build(backend) for backend in ("native", "kornia")}
        candidates = {backend: (lambda views=views: [view(x, generator) for view in views])
                      for backend, views in built.items()}
        times = _alternate(candidates, repeats, device)
        medians = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        emit({"bench": "backend_policy", **device_facts(device), "policy": name, "batch": batch, "size": 32,
              "repeats": repeats,
              "native_ms": round(medians["native"], 2), "kornia_ms": round(medians["kornia"], 2),
              "kornia_over_native": round(medians["kornia"] / medians["native"], 2)})
    frames = torch.randint(0, 256, (batch, 9, 100, 100), dtype=torch.uint8, generator=generator).to(device)
    storage = torch.randint(0, 256, (4 * batch, 9, 100, 100), dtype=torch.uint8, generator=generator).to(device)
    index = torch.randint(len(storage), (batch,), generator=generator).to(device)
    centred = frames[:, :, 8:92, 8:92]
    rl = {
        "crop_100_to_84": lambda b: random_crop(frames, 84, generator, backend=b),
        "crop_from_storage": lambda b: random_crop(storage, 84, generator, indices=index, backend=b),
        "shift_84_pad4": lambda b: random_shift(centred, 4, generator, backend=b),
    }
    for name, fn in rl.items():
        times = _alternate({b: (lambda b=b: fn(b)) for b in ("native", "kornia")}, 4 * repeats, device)
        medians = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        emit({"bench": "backend_rl", **device_facts(device), "op": name, "batch": batch, "dtype": "uint8",
              "repeats": 4 * repeats,
              "native_ms": round(medians["native"], 2), "kornia_ms": round(medians["kornia"], 2),
              "kornia_over_native": round(medians["kornia"] / medians["native"], 2)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512, help="images per batch for the SimCLR policies")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds of the policy comparison; the crop is timed 20x this often")
    parser.add_argument("--images", type=int, default=8192, help="CIFAR-10 train images for the batched policy")
    parser.add_argument("--tv-images", type=int, default=4096,
                        help="images for the per-sample torchvision pipeline (each config and round)")
    parser.add_argument("--replay", type=int, default=1024,
                        help="frame stacks (9 x 100 x 100 uint8) per replay storage for rl_sample_crop")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (intra-op)")
    add_device_argument(parser, "where the backends part runs (--only backends: native vs kornia for every policy "
                                "and the RL crop / shift); the other parts time the CPU")
    parser.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg.zip (default: the data root)")
    parser.add_argument("--spin-wait", action="store_true",
                        help="keep OpenMP's default spin-waiting (do not set OMP_WAIT_POLICY=PASSIVE)")
    parser.add_argument("--only", choices=["batched", "torchvision", "crop", "backends"], action="append",
                        help="run only these parts (repeatable); default: all")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    if args.images < args.batch or args.tv_images < 2 * args.batch:
        parser.error("--images must hold one batch and --tv-images two (the first is not timed)")
    torch.set_num_threads(args.threads)
    parts = set(args.only or ["batched", "torchvision", "crop", "backends"])
    device = select_device(args.device)
    emit({"bench": "environment", **device_facts(device), "torch": torch.__version__, "cpus": os.cpu_count(),
          "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
          "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
          "load_average_1min": round(os.getloadavg()[0], 2)})
    if parts & {"batched", "torchvision"}:
        images = load_train_images(max(args.images, args.tv_images), args.data_root)
        bench_policies(images[:args.images], images[:args.tv_images], args.batch, args.repeats, parts)
    if "backends" in parts:
        bench_backends(load_train_images(args.batch, args.data_root), args.batch, args.repeats,
                       device)
    if "crop" in parts:
        for batch in (128, 512):
            bench_rl_crop(batch, 20 * args.repeats)
        for batch in (128, 512):
            bench_rl_sample_crop(batch, args.replay, 20 * args.repeats)
    emit({"bench": "environment_after", "load_average_1min": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
