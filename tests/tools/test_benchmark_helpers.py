"""benchmarks/reference.py and benchmarks/peak.py: alternating rounds and their ratios (with a
fake clock, no timing), FLOP counts against the formulas, fractions of a peak only for the
same machine, profile categories, worker pausing and the reference shims."""

import json
import multiprocessing
import statistics
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from benchmarks import peak
from benchmarks import reference as ref


class FakeClock:
    """A clock that only moves when a contender's step says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_alternate_rotates_the_order_and_times_each_turn_per_step():
    clock, log = FakeClock(), []

    def contender(name: str, seconds: float):
        def step():
            log.append(name)
            clock.now += seconds
        return step

    times = ref.alternate({"a": contender("a", 1.0), "b": contender("b", 3.0), "c": contender("c", 0.5)},
                          rounds=4, calls=2, warmup=1, clock=clock)
    assert times == {"a": [1.0] * 4, "b": [3.0] * 4, "c": [0.5] * 4}  # seconds per step, not per turn
    warmup, rounds = log[:3], log[3:]
    assert warmup == ["a", "b", "c"]
    turns = rounds[::2]  # each turn is 2 consecutive steps of one contender
    assert rounds[1::2] == turns
    assert turns == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # rotated left by r


def test_alternate_runs_enter_and_leave_outside_the_timed_window():
    clock, events = FakeClock(), []

    def enter():
        events.append("enter")
        clock.now += 100.0  # e.g. resuming workers: must not count

    def leave():
        events.append("leave")
        clock.now += 100.0

    def step():
        events.append("step")
        clock.now += 2.0

    times = ref.alternate({"x": ref.Contender(step, enter, leave)}, rounds=2, calls=3, warmup=1, clock=clock)
    assert times == {"x": [2.0, 2.0]}
    assert events == ["enter", "step", "leave"] + ["enter", "step", "step", "step", "leave"] * 2


def test_alternate_reports_rounds_and_rejects_bad_settings():
    seen = []
    ref.alternate({"a": lambda: None}, rounds=3, on_round=lambda r, s: seen.append((r, sorted(s))))
    assert seen == [(0, ["a"]), (1, ["a"]), (2, ["a"])]
    with pytest.raises(ValueError, match="rounds >= 1"):
        ref.alternate({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="at least one contender"):
        ref.alternate({}, rounds=1)


def test_a_contender_whose_warmup_fails_is_left_out_and_named_when_failures_are_collected():
    clock, log = FakeClock(), []

    def fine(name):
        def step():
            log.append(name)
            clock.now += 1.0
        return step

    def broken():
        raise RuntimeError("graph capture failed: operation not permitted when stream is capturing\nmore detail")

    contenders = {"a": fine("a"), "compiled": broken, "b": fine("b")}
    failed: dict[str, str] = {}
    times = ref.alternate(contenders, rounds=2, warmup=1, clock=clock, failed=failed)
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}
    assert failed == {"compiled": "RuntimeError: graph capture failed: operation not permitted when stream is capturing"}
    assert log == ["a", "b", "a", "b", "b", "a"]
    assert ref.alternate({"x": broken}, rounds=1, failed=(only := {})) == {} and list(only) == ["x"]
    with pytest.raises(RuntimeError, match="graph capture failed"):  # without ``failed`` the error propagates
        ref.alternate(contenders, rounds=1, clock=clock)


def test_compare_gives_the_median_of_per_round_ratios():
    times = {"reference": [2.0, 4.0, 3.0, 10.0, 2.0], "ours": [1.0, 1.0, 3.0, 2.0, 0.5]}
    out = ref.compare(times)
    ratios = [2.0, 4.0, 1.0, 5.0, 4.0]
    assert out["ours"]["speedup_per_round"] == ratios
    assert out["ours"]["speedup_vs_reference"] == statistics.median(ratios)
    # not the ratio of the medians (3.0 / 1.0)
    assert out["ours"]["speedup_vs_reference"] != statistics.median(times["reference"]) / statistics.median(times["ours"])
    low, high = out["ours"]["speedup_interval_95"]
    assert min(ratios) <= low <= statistics.median(ratios) <= high <= max(ratios)
    assert out["ours"]["median_s"] == 1.0 and out["ours"]["rounds"] == 5
    assert "speedup_vs_reference" not in out["reference"]


def test_compare_without_reference_or_with_few_rounds():
    out = ref.compare({"ours": [1.0, 2.0, 3.0]})
    assert out["ours"] == {"median_s": 2.0, "min_s": 1.0, "max_s": 3.0, "rounds": 3}
    few = ref.compare({"reference": [2.0, 2.0], "ours": [1.0, 1.0]})
    assert few["ours"]["speedup_vs_reference"] == 2.0 and "speedup_interval_95" not in few["ours"]
    with pytest.raises(ValueError, match="rounds must pair"):
        ref.compare({"reference": [1.0], "ours": [1.0, 2.0]})


def test_not_measured_says_why_and_how():
    record = ref.not_measured("no --reference given", "--reference TREE")
    assert record == {"reference": "not measured", "reason": "no --reference given", "how_to_measure": "--reference TREE"}


def test_count_flops_matches_the_gemm_and_convolution_formulas():
    a, b = torch.randn(7, 5), torch.randn(5, 3)
    assert ref.count_flops(lambda: a @ b) == 2 * 7 * 5 * 3
    assert ref.count_flops(lambda: a @ b, calls=4) == 2 * 7 * 5 * 3  # per call
    x, w = torch.randn(2, 4, 9, 9), torch.randn(6, 4, 3, 3)
    out_hw = 7 * 7  # no padding: 9 - 3 + 1
    assert ref.count_flops(lambda: F.conv2d(x, w)) == 2 * 2 * 6 * out_hw * 4 * 3 * 3
    w_grad = torch.randn(6, 4, 3, 3, requires_grad=True)
    # backward of a convolution whose input needs no gradient: the weight gradient only (same count again)
    assert ref.count_flops(lambda: F.conv2d(x, w_grad).sum().backward()) == 2 * (2 * 2 * 6 * out_hw * 4 * 9)


def test_peak_kernels_flops_agree_with_the_counter():
    call, flops = peak.gemm(16, torch.float32)
    assert flops == 2 * 16 ** 3 == ref.count_flops(call)
    call, flops = peak.conv3x3(2, 8, 6, torch.float32, channels_last=True)
    assert flops == 2 * 2 * 8 * 8 * 9 * 6 * 6 == ref.count_flops(call)


FACTS = {"cpu_model": "X", "cpu_capability": "AVX2", "native_bf16_cpu": False, "torch_threads": 2,
         "cpu_family_model": "25/1/1"}


def test_peak_fractions_divide_by_the_peak_of_the_same_machine():
    peak_record = {"bench": "peak", "peak_gflops": {"fp32": 100.0, "bf16": 4.0}, **FACTS}
    row = ref.peak_fractions(30e9, 0.5, "fp32", peak_record, FACTS)
    assert row["achieved_gflops"] == 60.0 and row["fraction_of_peak"] == 0.6 and row["fraction_of_fp32_peak"] == 0.6
    row = ref.peak_fractions(2e9, 1.0, "bf16", peak_record, FACTS)
    assert row["fraction_of_peak"] == 0.5 and row["fraction_of_fp32_peak"] == 0.02


def test_peak_fractions_refuse_another_machine_and_missing_peaks():
    peak_record = {"peak_gflops": {"fp32": 100.0}, **FACTS}
    other = {**FACTS, "cpu_capability": "AVX512", "torch_threads": 1}
    row = ref.peak_fractions(1e9, 1.0, "fp32", peak_record, other)
    assert row["fraction_of_peak"] is None
    assert "cpu_capability" in row["peak_note"] and "torch_threads" in row["peak_note"]
    assert ref.peak_fractions(1e9, 1.0, "fp32", None)["fraction_of_peak"] is None
    with pytest.raises(ValueError, match="no 'bf16' peak"):
        ref.peak_fractions(1e9, 1.0, "bf16", peak_record, FACTS)
    with pytest.raises(ValueError, match="seconds must be > 0"):
        ref.peak_fractions(1e9, 0.0, "fp32", peak_record, FACTS)


def test_load_peak_reads_the_last_peak_line(tmp_path):
    path = tmp_path / "peak.json"
    lines = [{"bench": "peak_kernel", "best_gflops": 1.0}, {"bench": "peak", "peak_gflops": {"fp32": 1.0}},
             {"bench": "peak", "peak_gflops": {"fp32": 2.0}}]
    path.write_text("some log line\n" + "\n".join(json.dumps(line) for line in lines) + "\n")
    assert ref.load_peak(path)["peak_gflops"] == {"fp32": 2.0}
    path.write_text(json.dumps(lines[0]) + "\n")
    with pytest.raises(ValueError, match="benchmarks/peak.py"):
        ref.load_peak(path)


@pytest.mark.parametrize("name, ancestors, category", [
    ("aten::mkldnn_convolution", [], "gemm_conv"),
    ("aten::convolution_backward", ["ConvolutionBackward0"], "gemm_conv"),
    ("aten::addmm", [], "gemm_conv"),
    ("aten::mm", ["MmBackward0"], "gemm_conv"),
    ("aten::add_", ["Optimizer.step#Adam.step"], "optimiser"),
    ("aten::mm", ["aten::foo", "Optimizer.step#SGD.step"], "optimiser"),
    ("Optimizer.zero_grad#Adam.zero_grad", [], "optimiser"),
    ("aten::_to_copy", ["aten::to"], "copies_casts_layout"),
    ("aten::copy_", [], "copies_casts_layout"),
    ("aten::gather", [], "gather_crop_pad"),
    ("aten::grid_sampler_2d", [], "gather_crop_pad"),
    ("aten::empty_strided", [], "allocation_fill"),
    ("aten::relu", [], "other_ops"),
    ("aten::native_batch_norm", [], "other_ops"),
])
def test_op_category(name, ancestors, category):
    assert ref.op_category(name, ancestors) == category


def test_summarize_profile_sums_categories_and_the_rest_of_the_wall_time():
    events = [("aten::mm", [], 0.5), ("aten::mm", ["MmBackward0"], 0.25), ("aten::add_", ["Optimizer.step#Adam.step"], 0.1),
              ("aten::relu", [], 0.05), ("aten::copy_", [], 0.05)]
    out = ref.summarize_profile(events, wall_s=1.0, top=2)
    assert out["by_category"]["gemm_conv"] == {"s": 0.75, "share_of_wall": 0.75}
    assert out["by_category"]["optimiser"]["s"] == 0.1
    assert sum(v["s"] for v in out["by_category"].values()) == pytest.approx(0.95)
    assert out["outside_ops_s"] == pytest.approx(0.05)
    assert [row["op"] for row in out["top_ops"]] == ["aten::mm", "aten::add_ [optimiser]"]
    assert out["top_ops"][0]["calls"] == 2


def test_profile_ops_attributes_a_training_step():
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(32, 64)

    def step():
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()

    step()  # Adam's state exists before profiling
    out = ref.profile_ops(step, calls=2, top=1000)  # every operator listed: nothing below depends on how long one took
    categories = {op["category"] for op in out["top_ops"]}
    assert {"gemm_conv", "optimiser"} <= categories  # the matrix products and Adam's update are recognised
    assert all(op["calls"] >= 1 for op in out["top_ops"])
    attributed = sum(v["s"] for v in out["by_category"].values())
    assert attributed + out["outside_ops_s"] >= out["wall_s"] - 1e-3  # every part of the wall time is placed (values rounded)
    assert len(ref.profile_ops(step, calls=1, top=3)["top_ops"]) == 3


def _sleep() -> None:
    time.sleep(30)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_pause_and_resume_only_the_new_children():
    before = ref.child_pids()
    child = multiprocessing.get_context("fork").Process(target=_sleep, daemon=True)
    child.start()
    try:
        workers = ref.WorkerProcesses(before)
        assert workers.pids == [child.pid]
        workers.pause()
        deadline = time.monotonic() + 5
        while _state(child.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(child.pid) == "T"  # stopped
        workers.resume()
        deadline = time.monotonic() + 5
        while _state(child.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(child.pid) in ("S", "R")
    finally:
        child.terminate()
        child.join()


def test_stub_module_only_when_missing_and_argv_is_restored():
    name = "benchmark_helpers_missing_module"
    try:
        assert ref.stub_module(name, Wrapper=int) is True
        assert sys.modules[name].Wrapper is int
        assert ref.stub_module("json") is False and sys.modules["json"] is json
    finally:
        sys.modules.pop(name, None)
    saved = list(sys.argv)
    with ref.argv(["train.py", "--CUT_mode", "FastCUT"]):
        assert sys.argv == ["train.py", "--CUT_mode", "FastCUT"]
    assert sys.argv == saved


def test_reference_tree_names_missing_files_and_reads_the_commit(tmp_path):
    (tmp_path / "curl_sac.py").write_text("")
    with pytest.raises(SystemExit, match="missing: utils.py.*clone it"):
        ref.reference_tree(tmp_path, ["curl_sac.py", "utils.py"], "MishaLaskin/curl", "clone it")
    (tmp_path / "utils.py").write_text("")
    assert ref.reference_tree(tmp_path, ["curl_sac.py", "utils.py"], "x", "y") == tmp_path.resolve()
    (tmp_path / "REFERENCE_COMMIT").write_text("8416d6e3869e38ca0e46fcbc54a2f784dc09d7fc\n")
    assert ref.tree_commit(tmp_path) == "8416d6e3869e38ca0e46fcbc54a2f784dc09d7fc"


def test_run_facts_carry_the_machine_facts_and_the_load():
    facts = ref.run_facts()
    for key in ("cpu_model", "cpu_capability", "native_bf16_cpu", "torch_threads", "cpu_family_model", "load_average"):
        assert key in facts
    assert facts["torch_threads"] == torch.get_num_threads()


def test_tables_render_the_benchmarks_json_lines(tmp_path):
    """benchmarks/tables.py turns the committed JSON lines into the docs' tables, ratios and
    peak fractions included, and names the folder when there is nothing to read."""
    import json

    from benchmarks import tables

    facts = {"cpu_model": "CPU", "cpu_family_model": "25/1/1", "cpu_capability": "AVX2", "native_bf16_cpu": False,
             "torch_threads": 2, "torch": "2.x", "load_average": [0.2, 0.3, 0.4]}
    lines = [{"bench": "rl_update", "batch": 128, "contender": "ours_fp32", "median_s": 0.5, "rounds": 5,
              "speedup_vs_reference": 2.0, "speedup_interval_95": [1.9, 2.1], "flops_per_step": 71e9,
              "achieved_gflops": 142.0, "fraction_of_peak": 0.71, **facts},
             {"bench": "rl_update", "batch": 128, "contender": "reference", "median_s": 1.0, "rounds": 5,
              "flops_per_step": 115e9, "achieved_gflops": 115.0, "fraction_of_peak": 0.575, **facts},
             {"bench": "rl_update", "contender": "ours_bf16", "skipped": "emulated"}]
    (tmp_path / "rl.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    text = tables.tables(tmp_path)
    assert "| 128 | ours_fp32 (joint: 1 encoder step) | 0.500 | 2.00x [1.90, 2.10] | 71.0 | 142.0 | 71% |" in text
    assert ("| 128 | reference (official sequence: 3 encoder steps) | 1.000 |  | 115.0 | 115.0 | 57% |" in text
            and "ours_bf16" not in text)
    assert "load average 0.20-0.20" in text
    with pytest.raises(SystemExit, match="no benchmark output"):
        tables.tables(tmp_path / "empty")

    # several machines: one section per folder, each with its own machine line, and --write per folder
    other = tmp_path / "other-machine"
    other.mkdir()
    (other / "rl.jsonl").write_text(json.dumps({**lines[0], "cpu_model": "Other CPU", "median_s": 0.25}) + "\n")
    both = tables.main([str(tmp_path), str(other), "--write"])
    assert both.index(f"## {tmp_path.name}") < both.index("## other-machine")
    assert "Other CPU" in both.split("## other-machine")[1] and "Other CPU" not in both.split("## other-machine")[0]
    assert (other / "tables.md").read_text() == tables.tables(other)


def test_a_gpu_checks_lines_are_split_into_benchmark_files_and_tabled_with_the_gpu(tmp_path):
    """A GPU check prints every benchmark into one results.jsonl: --split sorts the lines (the
    check's own left out); the tables name the GPU, give the datasheet fraction, list failed
    contenders, and table the augmentation backends."""
    import json

    from benchmarks import tables

    facts = {"cpu_model": "Host CPU", "cpu_family_model": "25/17/1", "cpu_capability": "AVX512", "native_bf16_cpu": True,
             "torch_threads": 16, "torch": "2.11.0+cu130", "gpu": "NVIDIA H200", "gpu_capability": "9.0",
             "gpu_memory_gib": 139.8, "cuda_version": "13.0", "cudnn": 91900}
    lines = [{"check": "facts", "gpu": "NVIDIA H200"},
             {"bench": "peak", "peak_gflops": {"fp32": 400000.0, "bf16": 700000.0}, "by_kernel_gflops": {
                 "fp32": {"gemm": 400000.0}, "bf16": {"gemm": 700000.0}}, "datasheet_tflops": {"bf16": 989.4}, **facts},
             {"benchmark": "cut_train_step", "mode": "cut", "size": 256, "batch": 1, "contender": "ours_graphs_bf16",
              "median_s": 0.0123, "speedup_vs_reference": 4.7, "speedup_interval_95": [4.5, 4.9], "flops_per_step": 1e11,
              "achieved_gflops": 8130.0, "fraction_of_peak": 0.0116, "fraction_of_datasheet_peak": 0.0082, **facts},
             {"benchmark": "cut_train_step", "mode": "cut", "size": 256, "batch": 1, "contender": "ours_compiled_fp32",
              "failed": "RuntimeError: inductor refused", **facts},
             {"bench": "backend_policy", "device": "cuda:0", "gpu": "NVIDIA H200", "policy": "simclr_cifar", "batch": 512,
              "native_ms": 1.2, "kornia_ms": 9.6, "kornia_over_native": 8.0}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    folder = tmp_path / "gpu-h200"
    tables.main([str(folder), "--split", str(results), "--write"])
    assert sorted(p.name for p in folder.iterdir()) == ["augment.jsonl", "cut.jsonl", "peak.json", "tables.md"]
    text = (folder / "tables.md").read_text()
    assert "NVIDIA H200 (compute capability 9.0, 139.8 GiB, CUDA 13.0, cuDNN 91900); host Host CPU" in text
    assert "Datasheet, dense (TFLOP/s): bf16 989.4." in text
    assert "| cut | 256 | 1 | ours_graphs_bf16 | 0.012 | 4.70x [4.50, 4.90] | 100.0 | 8130.0 | 1% | 0.8% |" in text
    assert "- ours_compiled_fp32 cut 256 1: failed (RuntimeError: inductor refused)" in text
    assert "| simclr_cifar | cuda:0 | 512 | 1.2 | 9.6 | 8.0 |" in text
    with pytest.raises(SystemExit):
        tables.main([str(folder), str(tmp_path), "--split", str(results)])


def test_layer_peak_counts_each_layer_and_tables_divide_by_the_mix(tmp_path, capsys):
    """benchmarks/layer_peak.py: per layer FLOPs as the flop counter gives them for the CURL encoder's
    shapes (forward + backward), the mix rate sum(flops) / sum(seconds); tables.py's "of layer peak"
    is achieved GFLOP/s over the best mix rate at the contender's precision."""
    import json

    from benchmarks import layer_peak, tables

    lines = layer_peak.main(["--quick", "--threads", "1"])
    capsys.readouterr()
    assert {line["step"] for line in lines} == {"curl_update", "cut_train_step", "simclr_step"}
    fp32 = next(line for line in lines if line["dtype"] == "fp32" and line["step"] == "curl_update")
    conv2 = next(layer for layer in fp32["layers"] if layer["layer"] == "conv2")
    # 3x3, 32 -> 32 channels at 41 -> 39: forward 2 B C_out C_in 9 39^2, backward twice that (input + weight)
    assert conv2["gflop"] == pytest.approx(3 * 2 * 2 * 32 * 32 * 9 * 39 * 39 / 1e9, rel=1e-3)
    conv1 = next(layer for layer in fp32["layers"] if layer["layer"] == "conv1")
    assert conv1["gflop"] == pytest.approx(2 * 2 * 2 * 32 * 9 * 9 * 41 * 41 / 1e9, rel=1e-3)  # no input gradient
    cut = next(line for line in lines if line["dtype"] == "fp32" and line["step"] == "cut_train_step")
    block = next(layer for layer in cut["layers"] if layer["layer"] == "g_block0")  # 3x3 256 -> 256 at 32 px, padded
    assert block["gflop"] == pytest.approx(3 * 2 * 2 * 256 * 256 * 9 * 32 * 32 / 1e9, rel=1e-3)
    total_s = sum(layer["best_s"] for layer in fp32["layers"])
    assert fp32["mix_gflops"] == pytest.approx(sum(layer["gflop"] for layer in fp32["layers"]) / total_s, rel=1e-2)

    peaks = [{"bench": "layer_peak", "dtype": "fp32", "batch": 32, "mix_gflops": 200.0, "layers": fp32["layers"]},
             {"bench": "layer_peak", "dtype": "fp32", "batch": 512, "mix_gflops": 250.0, "layers": fp32["layers"]},
             {"bench": "layer_peak", "dtype": "bf16", "batch": 32, "mix_gflops": 1000.0, "layers": fp32["layers"]},
             {"bench": "layer_peak", "step": "cut_train_step", "dtype": "fp32", "batch": 1, "mix_gflops": 50.0,
              "layers": cut["layers"]}]  # another step's peak: never divides a CURL row
    (tmp_path / "layer_peak.jsonl").write_text("\n".join(json.dumps(p) for p in peaks) + "\n")
    rows = [{"bench": "rl_update", "batch": 128, "contender": "ours_bf16", "median_s": 0.3, "achieved_gflops": 250.0},
            {"bench": "rl_update", "batch": 128, "contender": "reference", "median_s": 0.9, "achieved_gflops": 100.0}]
    (tmp_path / "rl.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = tables.tables(tmp_path)
    assert "| 128 | ours_bf16 (joint: 1 encoder step) | 0.300 |  |  | 250.0 |  | 25% |" in text
    assert "| 128 | reference (official sequence: 3 encoder steps) | 0.900 |  |  | 100.0 |  | 40% |" in text



# ----------------------------------------------------------------------------- devices and CUDA timing

class Recorder:
    """A fake clock and torch.cuda.synchronize writing to one log, to check their order."""

    def __init__(self) -> None:
        self.log, self.now = [], 0.0

    def clock(self) -> float:
        self.log.append("clock")
        return self.now

    def synchronize(self, device=None) -> None:
        self.log.append(("sync", str(device)))

    def work(self) -> None:
        self.log.append("work")
        self.now += 1.0


def test_timed_synchronizes_a_cuda_device_before_both_clock_readings(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(torch.cuda, "synchronize", rec.synchronize)
    seconds = ref.timed(rec.work, calls=2, device=torch.device("cuda", 0), clock=rec.clock)
    assert seconds == 2.0
    sync = ("sync", "cuda:0")
    assert rec.log == [sync, "clock", "work", "work", sync, "clock"]


def test_timed_never_synchronizes_the_cpu(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(torch.cuda, "synchronize", rec.synchronize)
    for device in (None, torch.device("cpu"), "cpu"):
        rec.log.clear()
        assert ref.timed(rec.work, device=device, clock=rec.clock) == 1.0
        assert rec.log == ["clock", "work", "clock"]
    assert ref.synchronizer("cuda:1") is not None and ref.synchronizer(torch.device("cpu")) is None


def test_alternate_on_cuda_synchronizes_every_turn_and_warmup(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(torch.cuda, "synchronize", rec.synchronize)
    times = ref.alternate({"a": rec.work, "b": rec.work}, rounds=2, calls=3, warmup=1, clock=rec.clock,
                          device=torch.device("cuda", 0))
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0]}
    sync = ("sync", "cuda:0")
    turn = lambda calls: [sync, "clock"] + ["work"] * calls + [sync, "clock"]  # noqa: E731
    assert rec.log == turn(1) * 2 + turn(3) * 4


def test_select_device_without_cuda_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setattr(ref, "_selected_device", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as err:
        ref.select_device("cuda")
    message = str(err.value)
    assert "\n" not in message and message.startswith("--device cuda:") and "--device cpu" in message
    assert ref.select_device("auto") == torch.device("cpu") and ref.select_device("cpu") == torch.device("cpu")


def fake_gpu(monkeypatch, bf16: bool = True) -> None:
    """torch.cuda as an H200 would answer it, for the CUDA branches of the device helpers."""
    props = type("Props", (), {"name": "NVIDIA H200", "major": 9, "minor": 0, "total_memory": 141 * 2**30})()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)


def test_emit_carries_the_gpu_facts_after_select_device_cuda(monkeypatch, capsys):
    monkeypatch.setattr(ref, "_selected_device", None)
    fake_gpu(monkeypatch)
    monkeypatch.setattr(ref, "machine_facts", lambda: {"cpu_model": "X", "cuda": "NVIDIA H200"})
    device = ref.select_device("cuda")
    assert device == torch.device("cuda", 0)
    assert ref.default_precisions(device) == ["fp32", "bf16"]
    ref.emit({"bench": "x"})
    line = json.loads(capsys.readouterr().out)
    assert line["device"] == "cuda:0" and line["gpu"] == "NVIDIA H200" and line["gpu_capability"] == "9.0"
    assert line["native_bf16_device"] is True and line["torch"] == torch.__version__
    assert line["cuda_version"] == torch.version.cuda and line["cudnn"] == 91000 and line["cpu_model"] == "X"
    fake_gpu(monkeypatch, bf16=False)
    assert ref.default_precisions(device) == ["fp32"] and "GPU" in ref.bf16_skip_note(device)


def test_peak_fractions_give_no_cpu_peak_fraction_for_gpu_timings():
    peak_record = {"bench": "peak", "peak_gflops": {"fp32": 100.0}, **FACTS, "gpu": None}
    row = ref.peak_fractions(30e9, 0.5, "fp32", peak_record, FACTS, device=torch.device("cuda", 0))
    assert row["achieved_gflops"] == 60.0 and row["fraction_of_peak"] is None and "measured on a CPU" in row["peak_note"]
    assert ref.peak_fractions(30e9, 0.5, "fp32", peak_record, FACTS, device=torch.device("cpu"))["fraction_of_peak"] == 0.6


def test_gpu_peak_fractions_need_the_same_gpu_and_build_and_add_the_datasheet_fraction():
    gpu = {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "cuda_version": "13.0"}
    peak_record = {"bench": "peak", "peak_gflops": {"fp32": 400_000.0, "bf16": 800_000.0}, **gpu,
                   "datasheet_tflops": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}}
    cuda = torch.device("cuda", 0)
    row = ref.peak_fractions(2e12, 0.01, "bf16", peak_record, {**FACTS, **gpu}, device=cuda)  # 200 TFLOP/s
    assert row["fraction_of_peak"] == 0.25 and row["fraction_of_fp32_peak"] == 0.5
    assert row["datasheet_tflops"] == 989.4 and row["fraction_of_datasheet_peak"] == round(200 / 989.4, 4)
    row = ref.peak_fractions(2e12, 0.01, "fp32", peak_record, {**FACTS, **gpu}, device=cuda)
    assert row["fraction_of_datasheet_peak"] == round(200 / 494.7, 4)  # fp32 convolutions run as TF32 there
    other = ref.peak_fractions(2e12, 0.01, "bf16", peak_record, {**FACTS, **gpu, "gpu": "NVIDIA H100 PCIe"}, device=cuda)
    assert other["fraction_of_peak"] is None and "NVIDIA H100 PCIe" in other["peak_note"]
    unlisted = {**peak_record, "datasheet_tflops": "not listed for this GPU"}
    assert "fraction_of_datasheet_peak" not in ref.peak_fractions(2e12, 0.01, "bf16", unlisted, {**FACTS, **gpu},
                                                                   device=cuda)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


DEVICE_KEYS = ("device", "gpu", "torch", "cuda_version", "cpu_model", "cpu_capability", "load_average")


def test_rl_benchmark_device_cpu_lines_carry_the_device_facts(monkeypatch, capsys):
    """A tiny ``benchmarks/rl.py --device cpu`` run: every line has the machine and device facts."""
    from benchmarks import rl

    monkeypatch.setattr(ref, "_selected_device", None)
    threads = torch.get_num_threads()
    try:
        rl.main(["--device", "cpu", "--quick", "--skip-env", "--capacity", "120", "--batch-sizes", "8",
                 "--rounds", "1", "--precisions", "fp32", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    lines = _json_lines(capsys.readouterr().out)
    timed_lines = [line for line in lines if line.get("bench") == "rl_update" and "median_s" in line]
    assert [line["contender"] for line in timed_lines] == ["ours_fp32"]
    assert timed_lines[0]["replay"] == "FrameReplayBuffer on cpu"
    for line in lines:
        assert all(key in line for key in DEVICE_KEYS), line
        assert line["device"] == "cpu" and line["gpu"] is None


def test_rl_and_cut_benchmarks_without_cuda_stop_with_one_line(monkeypatch, capsys):
    from benchmarks import cut, rl

    monkeypatch.setattr(ref, "_selected_device", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for main in (rl.main, cut.main):
        with pytest.raises(SystemExit, match="^--device cuda: CUDA is not available") as err:
            main(["--device", "cuda", "--quick"])
        assert "\n" not in str(err.value)
    assert capsys.readouterr().out == ""  # nothing timed, nothing printed
    with pytest.raises(SystemExit):
        rl.main(["--device", "gpu"])  # argparse: invalid choice
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_cut_benchmark_worker_device_cpu_lines_carry_the_device_facts(monkeypatch, capsys):
    """The worker of ``benchmarks/cut.py --device cpu`` (what each mode's process runs), tiny."""
    from benchmarks import cut

    monkeypatch.setattr(ref, "_selected_device", None)
    threads = torch.get_num_threads()
    try:
        cut.main(["--device", "cpu", "--quick", "--threads", "1", "--worker", "fastcut", "ours_fp32"])
    finally:
        torch.set_num_threads(threads)
    (line,) = _json_lines(capsys.readouterr().out)
    assert line["benchmark"] == "cut_train_step" and line["contender"] == "ours_fp32" and line["rounds"] == 2
    assert all(key in line for key in DEVICE_KEYS) and line["device"] == "cpu" and line["gpu"] is None
    assert "peak_rss_gib" in line and "peak_gpu_memory_gib" not in line


def test_cut_reference_gpu_ids_follow_the_device():
    from benchmarks import cut

    assert cut.reference_gpu_ids(torch.device("cpu")) == "-1"
    assert cut.reference_gpu_ids(torch.device("cuda", 0)) == "0"
    assert cut.reference_gpu_ids(torch.device("cuda", 1)) == "1"


def test_rl_contenders_put_agent_replay_and_sampling_on_the_device(monkeypatch):
    """The wiring of ``benchmarks/rl.py --device cuda`` without a GPU: ours builds agent, replay
    and sampling generator on the device (the whole batch through the convs), the reference
    agent and replay are handed the same device."""
    from benchmarks import rl

    seen = {}
    cuda = torch.device("cuda", 0)

    class Agent:
        def __init__(self, *args, **kwargs):
            seen["agent"] = (args[2], kwargs["conv_micro_batch"])

    class Replay:
        def __init__(self, *args, device=None, **kwargs):
            seen.setdefault("replay", []).append(device)

        def add(self, *args, **kwargs):
            pass

    class Generator:
        def __init__(self, device="cpu"):
            seen["generator"] = torch.device(device)

        def manual_seed(self, seed):
            return self

    monkeypatch.setattr(rl, "SacAgent", Agent)
    monkeypatch.setattr(rl, "FrameReplayBuffer", Replay)
    monkeypatch.setattr(torch, "Generator", Generator)
    rl.ours(8, bf16=False, capacity=3, device=cuda)
    assert seen == {"agent": (cuda, None), "replay": [cuda], "generator": cuda}

    class CurlAgent:
        def __init__(self, **kwargs):
            seen["reference_agent"] = kwargs["device"]

    curl_utils = type("utils", (), {"set_seed_everywhere": staticmethod(lambda seed: None),
                                    "ReplayBuffer": staticmethod(lambda **kw: Replay(device=kw["device"]))})
    rl.official(curl_utils, CurlAgent, 8, capacity=3, device=cuda)
    assert seen["reference_agent"] == cuda and seen["replay"][-1] == cuda


def test_cut_contenders_move_to_the_device_of_the_images(monkeypatch):
    from benchmarks import cut

    moved = []
    monkeypatch.setattr(cut.CUTModel, "to", lambda self, device: moved.append(device) or self)
    images = (torch.zeros(1, 3, 32, 32, device="meta"), torch.zeros(1, 3, 32, 32, device="meta"))  # a stand-in GPU
    shape = dict(size=32, batch=1, ngf=8, n_blocks=6)
    cut.ours("fastcut", "fp32", shape, images)
    cut.official_order_contender("fastcut", shape, images)
    assert moved == [torch.device("meta")] * 2


def test_each_contender_enters_with_its_own_cudnn_autotuning(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    resumed = []
    ref.cudnn_autotune(True, then=lambda: resumed.append(1))()
    assert torch.backends.cudnn.benchmark is True and resumed == [1]
    ref.cudnn_autotune(False)()
    assert torch.backends.cudnn.benchmark is False


def test_a_compiled_or_graphed_contender_is_counted_by_its_eager_twin():
    assert ref.eager_twin("ours_compiled_fp32") == "ours_fp32"
    assert ref.eager_twin("batched_bf16_compiled") == "batched_bf16"
    assert ref.eager_twin("ours_bf16_mb32_optofficial_graphs") == "ours_bf16_mb32_optofficial"
    assert ref.eager_twin("reference") == "reference" and ref.eager_twin("official_order_fp32") == "official_order_fp32"
