"""Markdown tables from the JSON lines the benchmarks printed, so the tables in
docs/benchmarks.md regenerate from the committed measurements:

    python benchmarks/tables.py results/benchmarks/cpu-avx2
    python benchmarks/tables.py results/benchmarks/*/ --write    # every machine, one section each

reads, where present, ``peak.json`` (``benchmarks/peak.py``), ``rl.jsonl`` (``rl.py``),
``cut.jsonl`` (``cut.py``), ``vision_throughput.jsonl`` (``vision_throughput.py``) and
``augment.jsonl`` (``augment.py``'s backend comparison) from the folder and prints one table per
file: per contender the median seconds per step, the speed-up against the reference measured in
the same run (median of per-round ratios, with its bootstrap interval when there were enough
rounds), GFLOP/s and the fraction of the machine's peak (on a GPU also of the datasheet's);
contenders that failed are listed under their table with the error.

A GPU check (``scripts/gpu_check.sh``, ``bench`` job) prints every benchmark's lines into one
``results.jsonl``; ``--split`` sorts them into such a folder first:

    python benchmarks/tables.py --split OUT/results.jsonl results/benchmarks/gpu-h200-2026-12-10 --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file (blank and non-JSON lines skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _ratio(row: dict) -> str:
    ratio = row.get("speedup_vs_reference")
    if ratio is None:
        return ""
    interval = row.get("speedup_interval_95")
    interval = f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    return f"{ratio:.2f}x{interval}"


def _fraction(row: dict) -> str:
    fraction = row.get("fraction_of_peak")
    return "" if fraction is None else f"{100 * fraction:.0f}%"


def _gflops(row: dict) -> str:
    value = row.get("achieved_gflops")
    return "" if value is None else f"{value:.1f}"


def _machine(rows: list[dict]) -> str:
    facts = next((r for r in rows if "cpu_model" in r), None)
    if facts is None:
        return ""
    loads = [r["load_average"][0] for r in rows if r.get("load_average")]
    load = f", load average {min(loads):.2f}-{max(loads):.2f}" if loads else ""
    gpu = next((r for r in rows if r.get("gpu")), None)
    device = ""
    if gpu is not None:  # work timed on a GPU: the GPU first, the host CPU after
        device = (f"{gpu['gpu']} (compute capability {gpu.get('gpu_capability')}, {gpu.get('gpu_memory_gib')} GiB, "
                  f"CUDA {gpu.get('cuda_version')}, cuDNN {gpu.get('cudnn')}); host ")
    return (f"{device}{facts['cpu_model']} (family/model {facts.get('cpu_family_model')}, {facts.get('cpu_capability')}, "
            f"native bf16: {facts.get('native_bf16_cpu')}), {facts.get('torch_threads')} threads, torch "
            f"{facts.get('torch')}{load}")


ENCODER_STEPS = {"joint": "joint: 1 encoder step", "official": "official sequence: 3 encoder steps"}


def _contender(row: dict) -> str:
    """The contender's name; for a CURL update also its optimiser sequence, since our default
    joint update does fewer FLOPs than the official sequence and a ratio must say which it is.
    Lines written before ``rl.py --optimizers`` existed carry no ``optimizers`` field: ours were
    then always the joint update, the reference and the official-style rebuild the official one."""
    name = row["contender"]
    if row.get("bench") != "rl_update":
        return name
    sequence = row.get("optimizers") or ("joint" if name.startswith("ours") else "official")
    return f"{name} ({ENCODER_STEPS.get(sequence, sequence)})"


def peak_table(rows: list[dict]) -> str:
    summary = next((r for r in rows if r.get("bench") == "peak"), None)
    if summary is None:
        return ""
    lines = ["| precision | kernel | best GFLOP/s |", "| --- | --- | ---: |"]
    for dtype, kernels in summary["by_kernel_gflops"].items():
        for kernel, value in kernels.items():
            lines.append(f"| {dtype} | {kernel} | {value:.1f} |")
    peaks = ", ".join(f"{d} {v:.1f}" for d, v in summary["peak_gflops"].items())
    datasheet = summary.get("datasheet_tflops")
    sheet = ""
    if isinstance(datasheet, dict):
        sheet = " Datasheet, dense (TFLOP/s): " + ", ".join(f"{d} {v:g}" for d, v in datasheet.items()) + "."
    return "\n".join([f"Peak (GFLOP/s): {peaks}.{sheet} {_machine(rows)}", "", *lines])


def _precision(row: dict) -> str:
    """The precision a contender ran its convolutions in: ours_bf16... are bf16, the rest fp32."""
    return "bf16" if "bf16" in row.get("contender", "") else "fp32"


LAYER_STEPS = {"rl_update": "curl_update", "cut_train_step": "cut_train_step", "vision_throughput": "simclr_step"}
"""The ``benchmarks/layer_peak.py`` step whose layers each benchmark's step runs."""


def _layer_fraction(row: dict, layer_peaks: dict[tuple[str, str, int], float]) -> str:
    """Achieved GFLOP/s over the best mix rate of the step's own layers (``layer_peak.jsonl``) at
    the contender's precision, over the batches measured (e.g. the micro-batch and the full batch)."""
    achieved = row.get("achieved_gflops")
    step = LAYER_STEPS.get(row.get("bench") or row.get("benchmark"))
    peaks = [v for (name, dtype, _), v in layer_peaks.items() if name == step and dtype == _precision(row)]
    if achieved is None or not peaks:
        return ""
    return f"{100 * achieved / max(peaks):.0f}%"


def step_table(rows: list[dict], key: str, keys: tuple[str, ...], unit: str = "s per step",
               layer_peaks: dict[tuple[str, int], float] | None = None) -> str:
    """One line per measured contender of the rows whose ``key`` field is a step measurement; with
    ``layer_peaks`` ((precision, batch) -> GFLOP/s of the step's own layers) a column "of layer peak"."""
    measured = [r for r in rows if r.get(key) in {"rl_update", "cut_train_step", "vision_throughput"}
                and r.get("median_s") is not None]
    if not measured:
        return ""
    header = [*keys, "contender", unit, "vs reference", "GFLOP/step", "GFLOP/s", "of peak"]
    align = " --- | ---: | ---: | ---: | ---: | ---: |"
    datasheet = any(r.get("fraction_of_datasheet_peak") is not None for r in measured)
    if datasheet:
        header.append("of datasheet peak")
        align += " ---: |"
    step = LAYER_STEPS.get(measured[0].get(key))
    layer_peaks = {k: v for k, v in (layer_peaks or {}).items() if k[0] == step}
    if layer_peaks:
        header.append("of layer peak")
        align += " ---: |"
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(keys) + align]
    for r in measured:
        flops = r.get("flops_per_step")
        cells = [str(r.get(k, "")) for k in keys] + [
            _contender(r), f"{r['median_s']:.3f}", _ratio(r), "" if flops is None else f"{flops / 1e9:.1f}",
            _gflops(r), _fraction(r)]
        if datasheet:
            fraction = r.get("fraction_of_datasheet_peak")
            cells.append("" if fraction is None else f"{100 * fraction:.1f}%")
        if layer_peaks:
            cells.append(_layer_fraction(r, layer_peaks))
        lines.append("| " + " | ".join(cells) + " |")
    failed = [f"- {r['contender']}" + "".join(f" {r[k]}" for k in keys if k in r) + f": failed ({r['failed']})"
              for r in rows if r.get(key) in {"rl_update", "cut_train_step", "vision_throughput"} and r.get("failed")]
    return "\n".join([_machine(rows), "", *lines] + (["", "Failed, so not timed:", *failed] if failed else []))


def augment_table(rows: list[dict]) -> str:
    """``augment.py --only backends``: native against kornia per SimCLR policy and RL augmentation."""
    measured = [r for r in rows if r.get("bench") in {"backend_policy", "backend_rl"}]
    if not measured:
        return ""
    lines = ["| augmentation | device | batch | native ms | kornia ms | kornia / native |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in measured:
        name = r.get("policy") or r.get("augmentation") or r.get("op") or r["bench"]
        lines.append(f"| {name} | {r.get('device', '')} | {r.get('batch', '')} | {r.get('native_ms', '')} | "
                     f"{r.get('kornia_ms', '')} | {r.get('kornia_over_native', '')} |")
    env = next((r for r in rows if r.get("bench") == "environment"), None)
    machine = _machine(rows) or ("" if env is None else (
        f"{env.get('gpu') or 'CPU'} ({env.get('device')}), {env.get('cpus')} CPUs ({env.get('machine')}), "
        f"{env.get('torch_threads')} torch threads, torch {env.get('torch')}, CUDA {env.get('cuda_version')}"))
    return "\n".join([machine, "", *lines])


SPLIT = {"peak.json": lambda r: r.get("bench") in {"peak", "peak_kernel"},
         "rl.jsonl": lambda r: str(r.get("bench", "")).startswith("rl_"),
         "cut.jsonl": lambda r: str(r.get("benchmark", "")).startswith("cut_"),
         "vision_throughput.jsonl": lambda r: str(r.get("bench", "")).startswith("vision_"),
         "augment.jsonl": lambda r: str(r.get("bench", "")).startswith(("backend_", "environment"))}
"""Which benchmark file each line of a GPU check's results.jsonl belongs to."""


def split_check(results: Path, folder: Path) -> dict[str, int]:
    """Sort a GPU check's ``results.jsonl`` into the per-benchmark files :func:`tables` reads
    (the check's own lines, ``{"check": ...}``, are left out); returns the lines per file."""
    rows = read_lines(results)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, belongs in SPLIT.items():
        mine = [r for r in rows if "check" not in r and belongs(r)]
        if mine:
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in mine))
            counts[name] = len(mine)
    return counts


def layer_peak_table(rows: list[dict]) -> str:
    """Each step's own layers (``benchmarks/layer_peak.py``): the mix rate per step, precision and batch."""
    measured = [r for r in rows if r.get("bench") == "layer_peak"]
    if not measured:
        return ""
    lines = ["| step | precision | batch | mix GFLOP/s | slowest layer (GFLOP/s) | fastest layer (GFLOP/s) |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for r in measured:
        ordered = sorted(r["layers"], key=lambda layer: layer["gflops"])
        lines.append(f"| {r.get('step', 'curl_update')} | {r['dtype']} | {r['batch']} | {r['mix_gflops']:.1f} | "
                     f"{ordered[0]['layer']} ({ordered[0]['gflops']:.1f}) | {ordered[-1]['layer']} "
                     f"({ordered[-1]['gflops']:.1f}) |")
    return "\n".join([f"Each step's own layers, forward and backward, each at its best. {_machine(measured)}",
                       "", *lines])


def env_table(rows: list[dict]) -> str:
    env = [r for r in rows if r.get("bench") == "rl_env"]
    return "\n".join(f"Environment: {r['task']} from pixels, {r['env_steps_per_s']} environment steps/s "
                     f"({r['renders_per_s']} renders/s, action repeat {r['action_repeat']}, MUJOCO_GL="
                     f"{r.get('mujoco_gl')})" for r in env)


def tables(folder: Path) -> str:
    parts = []
    layer_rows = read_lines(folder / "layer_peak.jsonl") if (folder / "layer_peak.jsonl").is_file() else []
    layer_peaks = {(r.get("step", "curl_update"), r["dtype"], r["batch"]): r["mix_gflops"] for r in layer_rows
                   if r.get("bench") == "layer_peak" and not r.get("quick")}
    sources = [("peak.json", lambda rows: peak_table(rows)),
               ("layer_peak.jsonl", lambda rows: layer_peak_table(rows)),
               ("rl.jsonl", lambda rows: "\n\n".join(t for t in (step_table(rows, "bench", ("batch",), layer_peaks=layer_peaks),
                                                                   env_table(rows)) if t)),
               ("cut.jsonl", lambda rows: step_table(rows, "benchmark", ("mode", "size", "batch"), layer_peaks=layer_peaks)),
               ("vision_throughput.jsonl", lambda rows: step_table(rows, "bench", ("batch_size",),
                                                                  layer_peaks=layer_peaks)),
               ("augment.jsonl", augment_table)]
    for name, render in sources:
        path = folder / name
        if path.is_file():
            text = render(read_lines(path))
            if text:
                parts.append(f"### {name}\n\n{text}")
    if not parts:
        raise SystemExit(f"error: no benchmark output (peak.json, rl.jsonl, cut.jsonl, vision_throughput.jsonl) "
                         f"in {folder} — give the folder the benchmarks wrote into")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="folders with the benchmarks' JSON-lines files, one per machine")
    parser.add_argument("--write", action="store_true", help="also write FOLDER/tables.md for each folder")
    parser.add_argument("--split", type=Path, metavar="RESULTS_JSONL",
                        help="first sort a GPU check's results.jsonl into the (one) folder's benchmark files")
    args = parser.parse_args(argv)
    if args.split is not None:
        if len(args.folders) != 1:
            parser.error("--split writes one machine's folder: give exactly one folder")
        if not args.split.is_file():
            parser.error(f"{args.split} does not exist: give the results.jsonl a gpu_check.sh call wrote")
        split_check(args.split, args.folders[0])
    sections = []
    for folder in args.folders:
        text = tables(folder)
        if args.write:
            (folder / "tables.md").write_text(text)
        # one machine per folder: its numbers are never divided by another folder's
        sections.append(text if len(args.folders) == 1 else f"## {folder.name}\n\n{text}")
    text = "\n".join(sections)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
