"""CUDA graphs for a training step: record its kernels once per variant, then replay them.

A training step of small networks (CURL's 4-conv encoder and 1024-wide MLPs at batch 128) is
bound by kernel launches on a GPU: a few hundred small kernels, each launched from Python. A
CUDA graph records the kernels of one call and replays all of them with one launch, on the same
memory. :class:`StepGraphs` wraps a step function ``step(inputs, *key) -> dict of tensors`` so:

1. the first ``warmup`` calls of each ``key`` run eagerly on a side stream (cuDNN's algorithm
   search, the optimisers' lazily created state and autograd's buffers settle there);
2. the next call of that key records the step into a graph (gradients reset to None first, so
   the recorded backward writes into the graph's own buffers), then replays it;
3. every later call copies ``inputs`` into the graph's static input buffers and replays.

The step must be graph-safe (each is checked when it is recorded: torch raises on a violation):

- its tensors come from ``inputs`` (a tuple or NamedTuple of tensors of fixed shapes, on the
  device) or live at fixed addresses for the graph's lifetime: parameters, and optimiser state
  created before the recording with ``capturable=True`` (an optimiser whose state is then
  replaced, e.g. by ``load_state_dict``, needs :meth:`StepGraphs.reset`);
- no host synchronisation (``.item()``, ``bool(tensor)``, printing a tensor), no host-to-device
  copies of pageable memory;
- random numbers from the device's default generator only (torch advances its offset on each
  replay, so each replay draws fresh numbers);
- Python control flow that depends on ``key`` alone: one graph is recorded per distinct key.

bf16 autocast inside a recording must not cache its weight casts
(:func:`core_ssl.device.autocast` turns the cache off while a stream is recording).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Hashable, NamedTuple

import torch

StepOutputs = dict[str, torch.Tensor]


class _Recorded(NamedTuple):
    graph: "torch.cuda.CUDAGraph"
    outputs: StepOutputs


class StepGraphs:
    """``step(inputs, *key)`` replayed from one CUDA graph per ``key`` (see the module docstring).

    Args:
        step: the graph-safe step; returns a dict of tensors (detached metrics).
        parameters: returns every tensor whose ``.grad`` the step's backward passes write; their
            gradients are reset to None before each recording.
        warmup: eager calls per key before it is recorded (torch's examples use 3; 2 suffices
            for a step whose optimiser state exists after its first call).
        record: ``record(call) -> (graph, outputs)`` records ``call()`` (default
            :func:`record_cuda_graph`); ``graph.replay()`` must then write the outputs in place.
        run_eagerly: ``run_eagerly(call) -> outputs`` for the warm-up calls (default
            :func:`on_side_stream`).

    Calling returns the step's outputs; a replayed graph's outputs are cloned, so a caller
    may keep them across later calls.
    """

    def __init__(self, step: Callable[..., StepOutputs], parameters: Callable[[], Iterable[torch.Tensor]],
                 warmup: int = 2, record: Callable | None = None, run_eagerly: Callable | None = None) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 (cuDNN and the optimisers settle in eager calls), got {warmup}")
        self.step, self.parameters, self.warmup = step, parameters, warmup
        self.record, self.run_eagerly = record or record_cuda_graph, run_eagerly or on_side_stream
        self.reset()

    def reset(self) -> None:
        """Forget every recorded graph (after the step's state tensors were replaced)."""
        self._graphs: dict[Hashable, _Recorded] = {}
        self._eager_calls: dict[Hashable, int] = {}
        self._static: tuple[torch.Tensor, ...] | None = None

    @property
    def recorded(self) -> list[Hashable]:
        """The keys with a recorded graph."""
        return list(self._graphs)

    def __call__(self, inputs: tuple[torch.Tensor, ...], *key: Hashable) -> StepOutputs:
        recorded = self._graphs.get(key)
        if recorded is None:
            calls = self._eager_calls.get(key, 0)
            if calls < self.warmup:
                self._eager_calls[key] = calls + 1
                return self.run_eagerly(lambda: self.step(inputs, *key))
            recorded = self._graphs[key] = self._record(inputs, key)
        self._copy_in(inputs)
        recorded.graph.replay()
        return {name: value.clone() for name, value in recorded.outputs.items()}

    def _copy_in(self, inputs: tuple[torch.Tensor, ...]) -> None:
        for buffer, value in zip(self._static, inputs):
            buffer.copy_(value, non_blocking=True)

    def _record(self, inputs: tuple[torch.Tensor, ...], key: tuple) -> _Recorded:
        if self._static is None:
            clones = [value.clone() for value in inputs]
            self._static = type(inputs)(*clones) if hasattr(inputs, "_fields") else tuple(clones)
        elif [tuple(v.shape) for v in inputs] != [tuple(v.shape) for v in self._static]:
            raise ValueError("a CUDA graph replays fixed shapes: the inputs' shapes "
                             f"{[tuple(v.shape) for v in inputs]} differ from the recorded "
                             f"{[tuple(v.shape) for v in self._static]}; keep the batch size fixed")
        self._copy_in(inputs)
        for tensor in self.parameters():
            tensor.grad = None
        return _Recorded(*self.record(lambda: self.step(self._static, *key)))


def record_cuda_graph(call: Callable[[], StepOutputs]) -> tuple["torch.cuda.CUDAGraph", StepOutputs]:
    """``call()`` recorded into a new CUDA graph (not run): the graph and the output tensors
    its replays overwrite."""
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads (a progress bar) may use CUDA
        outputs = call()
    return graph, outputs


def on_side_stream(call: Callable[[], StepOutputs]) -> StepOutputs:
    """``call()`` on a fresh CUDA stream that waits for the current one (and is waited for):
    warm-up before a recording, as torch's CUDA-graph examples do it."""
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        outputs = call()
    current.wait_stream(side)
    return outputs


def graph_support(device: torch.device) -> str | None:
    """Why CUDA graphs cannot run on ``device``, or None when they can."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, not {device.type}"
    if not torch.cuda.is_available():
        return "CUDA graphs need CUDA, which is not available on this machine"
    return None


def capturable(settings: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """Optimiser keyword arguments with ``capturable=True`` added when ``enabled`` (Adam's
    step counter then lives on the device, so a recorded step can advance it)."""
    return {**settings, "capturable": True} if enabled else settings
