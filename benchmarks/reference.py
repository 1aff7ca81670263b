"""Shared helpers of the benchmark scripts: side-by-side timing, FLOP/s against the machine's
peak, operator profiles, and loading a reference implementation from a checkout.

Devices (:func:`add_device_argument`, :func:`select_device`, :func:`device_facts`). Every
benchmark takes ``--device cpu|cuda|auto`` (default cpu); :func:`select_device` resolves it
(``--device cuda`` without a GPU is a one-line error naming the fix) and from then on every
line :func:`emit` prints carries the device facts (GPU name and capability, torch, CUDA and
cuDNN versions) beside the machine facts.

Timing (:func:`timed`, :func:`alternate`, :func:`compare`). On a CUDA device
``torch.cuda.synchronize`` runs before both clock readings of a timed span, so the span holds
the kernels its calls queued and none queued before it. Every contender (ours in fp32, ours in
bf16, the reference code, ...) is timed in the same process, in rounds: in round r each
contender runs ``calls`` consecutive steps in turn, the order rotated by r, so slow drifts of
the machine's load hit all of them alike. A contender's time is the median over rounds of its seconds per
step; a speed-up against the reference is the median over rounds of the per-round ratio
``t_reference(r) / t_ours(r)`` (rounds are paired, so the ratio of one round compares steps
taken seconds apart). With at least :data:`MIN_ROUNDS_FOR_INTERVAL` rounds the ratio also gets
a 95% percentile bootstrap interval of that median over the rounds
(:func:`core_ssl.stats.bootstrap_interval`).

FLOP/s (:func:`count_flops`, :func:`peak_fractions`). FLOPs are what
``torch.utils.flop_counter.FlopCounterMode`` counts for one step (matmuls and convolutions,
forward and backward: ``2 * M * N * K`` per GEMM, ``2 * N * C_out * H_out * W_out * C_in * k_h
* k_w / groups`` per convolution); elementwise ops count zero. achieved = FLOPs / median seconds;
it is divided by the attainable peak that ``benchmarks/peak.py`` measured on the same machine
(same CPU, SIMD level and thread count, else no fraction is given).

Profiles (:func:`profile_ops`): ``torch.profiler`` self time per operator over a few steps,
grouped by :func:`op_category`, and the wall time no operator accounts for (Python, numpy,
waiting on DataLoader workers).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_ssl.device import machine_facts, native_bf16, resolve_device  # noqa: E402
from core_ssl.stats import bootstrap_interval  # noqa: E402

MIN_ROUNDS_FOR_INTERVAL = 5
REFERENCE = "reference"
#: machine facts that must agree between a peak measurement and a benchmark run
PEAK_KEYS = ("cpu_model", "cpu_capability", "native_bf16_cpu", "torch_threads", "cpu_family_model")
GPU_PEAK_KEYS = ("gpu", "torch", "cuda_version")
"""The facts a peak must share with the timed work to be divided by: the CPU's (and the thread
count), or for work timed on a GPU, the GPU and the torch / CUDA build."""


DEVICE_CHOICES = ("cpu", "cuda", "auto")

# ----------------------------------------------------------------------------- devices

_selected_device = None  # the device select_device() chose; emit() adds its facts


def add_device_argument(parser, what: str = "where the timed work runs") -> None:
    """The ``--device {cpu,cuda,auto}`` option every benchmark script takes (default cpu)."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                        help=f"{what}: cpu, cuda (the first GPU) or auto (cuda when one is visible)")


def select_device(name: str):
    """``--device`` as a ``torch.device``, remembered for :func:`emit`; a one-line
    ``SystemExit`` naming the fix when CUDA was asked for and is not there."""
    global _selected_device
    import torch

    from core_ssl.cli import CommandError

    try:
        device = resolve_device(name)
    except (RuntimeError, CommandError) as err:  # CommandError since resolve_device became a usage check
        raise SystemExit(f"--device {name}: CUDA is not available here (torch {torch.__version__}, built with CUDA "
                         f"{torch.version.cuda}); run on a machine with an NVIDIA GPU and a CUDA build of torch, "
                         f"or pass --device cpu") from err
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    _selected_device = device
    return device


def device_facts(device=None) -> dict[str, object]:
    """What a speed number depends on besides the CPU: the device, and on CUDA the GPU's name,
    compute capability, memory and native bf16, with the torch, CUDA and cuDNN versions
    (``gpu`` is None on the CPU; ``cuda_version`` is the CUDA torch was built with)."""
    import torch

    device = torch.device("cpu") if device is None else torch.device(device)
    facts: dict[str, object] = {"device": str(device), "torch": torch.__version__, "cuda_version": torch.version.cuda,
                                "gpu": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(gpu=props.name, gpu_capability=f"{props.major}.{props.minor}",
                     gpu_memory_gib=round(props.total_memory / 2**30, 1), native_bf16_device=native_bf16(device),
                     cudnn=torch.backends.cudnn.version())
    return facts


def is_cuda(device) -> bool:
    """Whether ``device`` (a ``torch.device``, a string such as ``"cuda:0"``, or None) is a GPU."""
    return device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda"


def bf16_skip_note(device) -> str:
    """Why bf16 is not timed by default on ``device`` (no native bf16 there)."""
    if is_cuda(device):
        return ("bf16 is not native on this GPU (torch.cuda.is_bf16_supported() is False); pass --precisions fp32 "
                "bf16 to time it anyway")
    return ("bf16 is emulated on this CPU (no AVX512-BF16 or AMX): 10-80x slower than fp32; pass --precisions fp32 "
            "bf16 to time it anyway")


def default_precisions(device) -> list[str]:
    """fp32, plus bf16 where ``device`` runs it natively (an AVX512-BF16 / AMX CPU, a bf16 GPU)."""
    return ["fp32", "bf16"] if native_bf16(device) else ["fp32"]


# ----------------------------------------------------------------------------- machine facts

def cpu_family_model() -> str | None:
    """``family/model/stepping`` from /proc/cpuinfo (e.g. ``25/1/1``: AMD Zen 3; ``25/17/x``:
    Zen 4); virtual machines often hide the marketing name but not these."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = {}
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return None
    parts = [fields.get(k) for k in ("cpu family", "model", "stepping")]
    return "/".join(parts) if all(parts) else None


def run_facts(device=None) -> dict[str, object]:
    """:func:`core_ssl.device.machine_facts` plus the CPU family/model, the 1/5/15-minute
    load averages at the time of the call and the :func:`device_facts` of ``device`` (default:
    the one :func:`select_device` chose, else the CPU): what every benchmark JSON line carries."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**machine_facts(), "cpu_family_model": cpu_family_model(),
            "load_average": [round(x, 2) for x in load] if load else None,
            **device_facts(_selected_device if device is None else device)}


def emit(record: Mapping[str, object]) -> None:
    """Print one JSON line with :func:`run_facts` appended (the record's keys win)."""
    print(json.dumps({**record, **{k: v for k, v in run_facts().items() if k not in record}}), flush=True)


# ----------------------------------------------------------------------------- timing

def synchronizer(device) -> Callable[[], None] | None:
    """``torch.cuda.synchronize(device)`` as a call for a CUDA device; None for the CPU (its
    ops finish before they return)."""
    if not is_cuda(device):
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


def timed(work: Callable[[], object], calls: int = 1, device=None,
          clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds ``calls`` consecutive ``work()`` calls take. On a CUDA ``device`` the queue is
    drained (``torch.cuda.synchronize``) before the first clock reading, so earlier work is not
    counted, and again before the second, so this work's kernels are: CUDA calls return when
    their kernels are queued, not done. The one timing helper of every benchmark script."""
    sync = synchronizer(device)
    if sync is not None:
        sync()
    started = clock()
    for _ in range(calls):
        work()
    if sync is not None:
        sync()
    return clock() - started


# ----------------------------------------------------------------------------- alternating rounds

@dataclass
class Contender:
    """One thing to time. ``step()`` runs one unit of work (an update, a training step);
    ``enter()`` / ``leave()`` run untimed around each of its turns (e.g. resume / pause its
    DataLoader workers, so they do not run while another contender is timed)."""

    step: Callable[[], object]
    enter: Callable[[], object] | None = None
    leave: Callable[[], object] | None = None


def eager_twin(name: str) -> str:
    """The contender whose FLOPs a compiled or graph-replayed contender is counted by: its name
    without the ``_compiled`` / ``_graphs`` part (``ours_compiled_fp32``, ``batched_bf16_compiled``,
    ``ours_fp32_graphs`` -> ``ours_fp32``, ``batched_bf16``, ``ours_fp32``). The FLOP counter sees
    neither compiled kernels nor a graph's replay; the maths is the eager twin's."""
    return re.sub(r"_(compiled|graphs)(?=_|$)", "", name)


def cudnn_autotune(on: bool, then: Callable[[], object] | None = None) -> Callable[[], None]:
    """A contender's ``enter``: ``torch.backends.cudnn.benchmark`` set as the contender's own
    training code sets it (this toolkit's commands: on, for their fixed shapes; code that never
    sets it: cuDNN's default, off), so each is timed with its own algorithm choice although all
    share one process; ``then`` runs after (e.g. resuming DataLoader workers)."""
    def enter() -> None:
        import torch

        torch.backends.cudnn.benchmark = on
        if then is not None:
            then()

    return enter


def alternate(contenders: Mapping[str, Contender | Callable[[], object]], rounds: int, calls: int = 1,
              warmup: int = 1, clock: Callable[[], float] = time.perf_counter,
              on_round: Callable[[int, dict[str, float]], None] | None = None,
              device=None, failed: dict[str, str] | None = None) -> dict[str, list[float]]:
    """Time the contenders in alternating rounds; returns ``{name: [seconds per step, one per
    round]}``.

    Each contender first runs ``warmup`` untimed steps (in the given order). With ``failed`` (a
    dict), a contender whose warm-up raises is left out and ``failed[name]`` says why (a
    compilation or graph recording that fails on one machine then costs only its own line);
    without it the error propagates. Then, for round
    ``r = 0 .. rounds - 1``, the contenders take turns in the given order rotated left by
    ``r``; a turn times ``calls`` consecutive steps with ``clock`` and records their total
    divided by ``calls``. ``on_round(r, {name: seconds})`` is called after each round. On a
    CUDA ``device`` each turn is timed by :func:`timed`, synchronised on both sides.
    """
    if rounds < 1 or calls < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, calls >= 1, warmup >= 0; got {rounds}, {calls}, {warmup}")
    if not contenders:
        raise ValueError("alternate needs at least one contender")
    entries = {name: c if isinstance(c, Contender) else Contender(c) for name, c in contenders.items()}
    names = list(entries)
    for name in list(names):
        try:
            _turn(entries[name], warmup, clock, device)
        except Exception as err:  # noqa: BLE001 - reported in ``failed``, the others go on
            if failed is None:
                raise
            failed[name] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:400]
            names.remove(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    if not names:
        return times
    for r in range(rounds):
        shift = r % len(names)
        this_round = {}
        for name in names[shift:] + names[:shift]:
            this_round[name] = _turn(entries[name], calls, clock, device) / calls
            times[name].append(this_round[name])
        if on_round is not None:
            on_round(r, this_round)
    return times


def _turn(contender: Contender, calls: int, clock: Callable[[], float], device=None) -> float:
    if calls == 0:
        return 0.0
    if contender.enter is not None:
        contender.enter()
    try:
        return timed(contender.step, calls, device, clock)
    finally:
        if contender.leave is not None:
            contender.leave()


@contextmanager
def turn_of(contender: Contender):
    """Run untimed work (FLOP counting, profiling) inside a contender's turn: ``enter()``
    before, ``leave()`` after."""
    if contender.enter is not None:
        contender.enter()
    try:
        yield contender
    finally:
        if contender.leave is not None:
            contender.leave()


class WorkerProcesses:
    """The child processes started since ``before`` (a set of pids, from
    :func:`child_pids` taken just before a DataLoader iterator was created: its workers),
    paused with SIGSTOP and resumed with SIGCONT, so a contender's DataLoader workers do not
    prefetch, and take CPU, while another contender is being timed."""

    def __init__(self, before: set[int]) -> None:
        self.pids = sorted(child_pids() - before)

    def pause(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGCONT)


def child_pids() -> set[int]:
    """Pids of this process's live ``multiprocessing`` children (DataLoader workers are)."""
    import multiprocessing

    return {p.pid for p in multiprocessing.active_children()}


def compare(times: Mapping[str, list[float]], reference: str = REFERENCE) -> dict[str, dict[str, object]]:
    """Per contender: ``median_s``, ``min_s``, ``max_s``, ``rounds``; when ``reference`` was
    timed, every other contender also gets ``speedup_vs_reference`` = median over rounds of
    ``t_reference[r] / t[r]`` (> 1: faster than the reference), the per-round ratios, and with
    at least :data:`MIN_ROUNDS_FOR_INTERVAL` rounds a 95% bootstrap interval of that median."""
    out: dict[str, dict[str, object]] = {}
    for name, samples in times.items():
        if not samples:
            raise ValueError(f"contender {name!r} has no timed rounds")
        row: dict[str, object] = {"median_s": round(statistics.median(samples), 5), "min_s": round(min(samples), 5),
                                  "max_s": round(max(samples), 5), "rounds": len(samples)}
        if reference in times and name != reference:
            ref = times[reference]
            if len(ref) != len(samples):
                raise ValueError(f"{name!r} has {len(samples)} rounds but {reference!r} {len(ref)}: rounds must pair")
            ratios = [a / b for a, b in zip(ref, samples)]
            row["speedup_vs_reference"] = round(statistics.median(ratios), 3)
            row["speedup_per_round"] = [round(x, 3) for x in ratios]
            if len(ratios) >= MIN_ROUNDS_FOR_INTERVAL:
                interval = bootstrap_interval(np.array(ratios), statistic=np.median, reps=2000)
                row["speedup_interval_95"] = [round(interval.low, 3), round(interval.high, 3)]
        out[name] = row
    return out


def not_measured(reason: str, how: str) -> dict[str, str]:
    """The record a script prints instead of a ratio when no reference was run."""
    return {"reference": "not measured", "reason": reason, "how_to_measure": how}


# ----------------------------------------------------------------------------- FLOPs and peak

def count_flops(step: Callable[[], object], calls: int = 1) -> float:
    """FLOPs per step: ``FlopCounterMode``'s total over ``calls`` consecutive steps / ``calls``
    (use an even ``calls`` for updates that alternate between two kinds of step)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        for _ in range(calls):
            step()
    return counter.get_total_flops() / calls


def twin_rate(contenders: Mapping[str, Contender], name: str, failed: Mapping[str, str], seconds: float,
              precision: str, peak: Mapping | None, device=None, calls: int = 1) -> dict[str, object]:
    """:func:`peak_fractions` of contender ``name`` timed at ``seconds`` per step, its FLOPs
    counted (over ``calls`` steps, inside a turn of its own) on its :func:`eager_twin`; ``{}``
    when that twin failed its warm-up (``failed``, from :func:`alternate`)."""
    twin = eager_twin(name)
    if twin in failed:
        return {}
    with turn_of(contenders[twin]) as contender:
        flops = count_flops(contender.step, calls=calls)
    return peak_fractions(flops, seconds, precision, peak, device=device)


def load_peak(path: str | os.PathLike) -> dict:
    """The last ``{"bench": "peak", ...}`` line of a ``benchmarks/peak.py`` output file."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip().startswith("{")]
    peaks = [line for line in lines if line.get("bench") == "peak"]
    if not peaks:
        raise ValueError(f"{path} holds no 'peak' line; write it with: python benchmarks/peak.py > {path}")
    return peaks[-1]


def peak_fractions(flops: float, seconds: float, precision: str, peak: Mapping | None,
                   facts: Mapping | None = None, device=None) -> dict[str, object]:
    """``achieved_gflops = flops / seconds / 1e9`` and, when ``peak`` (a :func:`load_peak`
    record) was measured where the work ran (the same :data:`PEAK_KEYS` facts as ``facts``,
    default this process's; for work on a CUDA ``device``, the same :data:`GPU_PEAK_KEYS`),
    ``fraction_of_peak`` = achieved / the peak of ``precision`` and ``fraction_of_fp32_peak`` =
    achieved / the fp32 peak; on a GPU whose datasheet peaks the record lists, also
    ``fraction_of_datasheet_peak`` (bf16 against the dense bf16 tensor-core peak, fp32 against
    the TF32 one, which is what fp32 convolutions use there). Otherwise ``fraction_of_peak`` is
    ``None`` with the reason."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    achieved = flops / seconds
    row: dict[str, object] = {"flops_per_step": int(flops), "achieved_gflops": round(achieved / 1e9, 3)}
    if peak is None:
        how = "python benchmarks/peak.py --device cuda > peak-gpu.json" if is_cuda(device) else \
            "python benchmarks/peak.py > peak.json"
        row.update(fraction_of_peak=None, peak_note=f"no --peak file given ({how})")
        return row
    facts = dict(run_facts(device) if facts is None else facts)
    keys = GPU_PEAK_KEYS if is_cuda(device) else PEAK_KEYS
    differ = [k for k in keys if peak.get(k) != facts.get(k)]
    if is_cuda(device) and peak.get("gpu") is None:
        row.update(fraction_of_peak=None, peak_note="the peak file was measured on a CPU, the work on a GPU "
                   "(python benchmarks/peak.py --device cuda > peak-gpu.json)")
        return row
    if differ:
        row.update(fraction_of_peak=None, peak_note="peak measured on a different machine, GPU or thread count: "
                   + ", ".join(f"{k} {peak.get(k)!r} vs {facts.get(k)!r}" for k in differ))
        return row
    peaks = peak["peak_gflops"]
    if precision not in peaks:
        raise ValueError(f"the peak file has no {precision!r} peak (it has {', '.join(peaks)})")
    row["peak_gflops"] = peaks[precision]
    row["fraction_of_peak"] = round(achieved / 1e9 / peaks[precision], 4)
    row["fraction_of_fp32_peak"] = round(achieved / 1e9 / peaks["fp32"], 4)
    datasheet = peak.get("datasheet_tflops")
    if is_cuda(device) and isinstance(datasheet, Mapping):
        tflops = datasheet["bf16" if precision == "bf16" else "tf32"]
        row["datasheet_tflops"] = tflops
        row["fraction_of_datasheet_peak"] = round(achieved / 1e12 / tflops, 4)
    return row


# ----------------------------------------------------------------------------- profiles

_GEMM_CONV = re.compile(r"conv|(^|::)(mm|addmm|bmm|baddbmm|matmul|linear|_mkldnn_\w+|mkldnn_\w+)$")
_COPIES = {"aten::copy_", "aten::_to_copy", "aten::to", "aten::contiguous", "aten::clone", "aten::to_mkldnn",
           "aten::_to_dense", "aten::to_dense", "aten::reorder", "aten::_copy_from", "aten::_copy_from_and_resize"}
_GATHER = {"aten::gather", "aten::index", "aten::index_select", "aten::take_along_dim", "aten::grid_sampler_2d",
           "aten::grid_sampler_2d_backward", "aten::unfold", "aten::take", "aten::index_put_", "aten::scatter_",
           "aten::flip", "aten::roll", "aten::replication_pad2d", "aten::reflection_pad2d", "aten::_index_put_impl_"}
_ALLOC = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::zeros", "aten::zeros_like",
          "aten::zero_", "aten::fill_", "aten::ones", "aten::ones_like", "aten::full", "aten::resize_"}
CATEGORIES = ("gemm_conv", "optimiser", "copies_casts_layout", "gather_crop_pad", "allocation_fill", "other_ops")


def op_category(name: str, ancestors: Iterable[str] = ()) -> str:
    """Where an operator's self time goes: ``optimiser`` if it runs inside an
    ``Optimizer.step`` / ``Optimizer.zero_grad`` scope (whatever the op); else ``gemm_conv``
    (convolutions, matmuls and their oneDNN kernels), ``copies_casts_layout`` (copies, dtype
    casts such as autocast's, memory-format conversions), ``gather_crop_pad`` (indexing,
    gathers, grid sampling, flips and padding: crops and shifts), ``allocation_fill`` (new or
    zeroed tensors) or ``other_ops`` (elementwise, reductions, norms: small ops)."""
    if any(a.startswith(("Optimizer.step", "Optimizer.zero_grad")) for a in ancestors) or \
            name.startswith(("Optimizer.step", "Optimizer.zero_grad")):
        return "optimiser"
    if name in _COPIES:
        return "copies_casts_layout"
    if name in _GATHER:
        return "gather_crop_pad"
    if name in _ALLOC:
        return "allocation_fill"
    if _GEMM_CONV.search(name) or name.startswith(("ConvolutionBackward", "MmBackward", "AddmmBackward")):
        return "gemm_conv"
    return "other_ops"


def summarize_profile(events: Iterable[tuple[str, list[str], float]], wall_s: float, top: int = 12) -> dict:
    """From ``(op name, ancestor names, self seconds)`` triples: seconds and share of the wall
    time per category, the ``top`` operators by self time, and ``outside_ops_s`` = wall time
    minus all self time (Python, numpy, waits: work no torch operator accounts for)."""
    by_op: dict[str, list[float]] = {}
    by_category = dict.fromkeys(CATEGORIES, 0.0)
    for name, ancestors, seconds in events:
        category = op_category(name, ancestors)
        by_category[category] += seconds
        key = f"{name} [optimiser]" if category == "optimiser" and not name.startswith("Optimizer.") else name
        entry = by_op.setdefault(key, [0.0, 0, category])
        entry[0] += seconds
        entry[1] += 1
    total = sum(by_category.values())
    ranked = sorted(by_op.items(), key=lambda item: -item[1][0])[:top]
    share = (lambda s: round(s / wall_s, 4)) if wall_s > 0 else (lambda s: None)
    return {"wall_s": round(wall_s, 4),
            "by_category": {k: {"s": round(v, 4), "share_of_wall": share(v)} for k, v in by_category.items()},
            "outside_ops_s": round(max(wall_s - total, 0.0), 4),
            "outside_ops_share": share(max(wall_s - total, 0.0)),
            "top_ops": [{"op": k, "self_s": round(v[0], 4), "share_of_wall": share(v[0]), "calls": v[1],
                         "category": v[2]} for k, v in ranked]}


def profile_ops(step: Callable[[], object], calls: int = 2, top: int = 12, device=None) -> dict:
    """Run ``calls`` steps under ``torch.profiler`` (CPU) and :func:`summarize_profile` them;
    wall time per step and self times per step (divided by ``calls``). On a CUDA ``device``
    the wall time is synchronised (:func:`timed`) but the self times stay the host's (time
    spent launching kernels, not running them): the record says so."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = timed(step, calls, device)

    def ancestors(event) -> list[str]:
        names, parent = [], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        return names

    events = [(e.name, ancestors(e), e.self_cpu_time_total / 1e6 / calls) for e in prof.events()]
    summary = summarize_profile(events, wall / calls, top)
    if synchronizer(device) is not None:
        summary["self_times"] = "host (CPU) time per operator: CUDA kernels run asynchronously and are not attributed"
    return summary


# ----------------------------------------------------------------------------- reference checkouts

def reference_tree(path: str | os.PathLike, required: Iterable[str], what: str, how: str) -> Path:
    """The checkout at ``path``, checked to hold the ``required`` files; an error naming the
    missing ones and ``how`` to make a checkout otherwise."""
    root = Path(path).expanduser().resolve()
    missing = [name for name in required if not (root / name).exists()]
    if not root.is_dir() or missing:
        raise SystemExit(f"--reference {path}: not a checkout of {what} (missing: "
                         f"{', '.join(missing) if root.is_dir() else 'the folder itself'}). {how}")
    return root


def tree_commit(root: Path) -> str | None:
    """The commit a reference work tree was made from: ``git rev-parse HEAD`` in a git work
    tree, else the first word of a ``REFERENCE_COMMIT`` file beside the code (write one when
    exporting with ``git archive``), else ``None``."""
    stamp = root / "REFERENCE_COMMIT"
    if stamp.is_file():
        return stamp.read_text().split()[0]
    try:
        result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def stub_module(name: str, **attributes: object) -> bool:
    """Register an empty module ``name`` with ``attributes`` in ``sys.modules`` when no real
    one can be imported (a shim for imports the timed reference code never uses); returns
    whether the stub was installed."""
    try:
        __import__(name)
        return False
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
        return True


@contextmanager
def argv(arguments: list[str]):
    """Set ``sys.argv`` for the duration (for reference code that parses the command line
    itself), then put the old one back."""
    saved = sys.argv
    sys.argv = list(arguments)
    try:
        yield
    finally:
        sys.argv = saved


def add_to_path(root: Path) -> None:
    """Put ``root`` first on ``sys.path`` (and keep it there: reference code imports its own
    modules lazily, inside functions)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
