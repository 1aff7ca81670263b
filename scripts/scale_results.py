"""The papers'-scale runs of a GPU check (``scripts/gpu_check.sh``, jobs ``vision``, ``ablate``
and ``cut``): their small records into ``results/scale/``, their weights joined, and the tables built.

    python scripts/scale_results.py collect OUT     # OUT: the folder a gpu_check.sh call wrote ($OUT)
    python -m cut_translation.evaluate --checkpoint runs/scale/generators/NAME.safetensors \\
        --output results/scale/cut/NAME/evaluation.json   # on a CPU with the FID network (its wheel stays here)
    python scripts/scale_results.py report          # results/scale/{vision,cut}/results.md (make reports)
    VISION_RUNS="$(python scripts/scale_results.py next)" JOBS=vision bash scripts/gpu_check.sh   # the next run

``collect`` copies every vision and CUT run folder of ``vision_runs.tgz`` / ``cut_runs.tgz`` into
``results/scale/<vision|cut>/<run>/`` (configs, summaries, evaluations, logs as CSV / JSON, plots
and sample grids, as ``scripts/collect_results.py`` copies run folders), beside ``gpu_facts.json``
(the GPU, torch and CUDA versions of that call, from its ``logs.tgz``); it joins each run's
weights, sent back in 15 MB parts, into ``runs/scale/{encoders,generators}/<run>.safetensors``
(not committed: a ResNet-18 encoder is 22 MB in fp16) and records their size and sha256 in
``weights.json``; an ``rl_runs.tgz`` goes to ``scripts/rl_table1.py collect`` (into
``rl_table1/`` beside the results folder); an ``ablate_runs.tgz`` (SimCLR's ablations) goes to
``results/scale/ablate/<name>/``: each cell's records under ``cells/``, the ablation's report and
``ablate_command.json``, the flags ``report`` rebuilds it with (``vision_benchmarks.ablate
--report-only``). ``report`` reads only the committed records.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import collect_results  # noqa: E402
from core_ssl.stats import format_seed_summary, seed_summary  # noqa: E402

RESULTS = ROOT / "results" / "scale"
STORE = ROOT / "runs" / "scale"
KINDS = {"vision": ("vision_runs.tgz", "encoder", "encoders"), "cut": ("cut_runs.tgz", "generator", "generators")}

# What the open libraries report for ResNet-18 on CIFAR-10 (their published tables, settings named).
LIBRARY_RESULTS = [
    ("lightly", "kNN top-1 (k = 200, t = 0.1)", "200 epochs, batch 128, one RTX A6000",
     {"simclr": 0.847, "mocov2": 0.838, "byol": 0.869}),
    ("lightly", "kNN top-1 (k = 200, t = 0.1)", "800 epochs, batch 512",
     {"simclr": 0.879, "mocov2": 0.899, "byol": 0.910}),
    ("solo-learn", "online linear top-1", "1000 epochs",
     {"simclr": 0.9074, "mocov2": 0.9294, "byol": 0.9258, "supcon": 0.9382}),
]


VISION_PLAN = [("simclr", 0), ("mocov2", 0), ("byol", 0), ("supcon", 0), ("simclr", 1), ("simclr", 2)]
"""The vision runs at the papers' scale, in the order to run them: each method of the comparison
with the libraries once, then SimCLR's further seeds (three for its interval)."""


def vision_pending(results: Path = RESULTS) -> list[str]:
    """The planned vision runs not yet evaluated (no ``eval_linear.json`` collected), as
    ``gpu_check.sh`` VISION_RUNS lines, in plan order."""
    return [f"{method}-s{seed}|--method {method} --seed {seed}" for method, seed in VISION_PLAN
            if not (results / "vision" / f"{method}-s{seed}" / "eval_linear.json").is_file()]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _facts(out: Path) -> dict:
    """The GPU check's facts.json (inside logs.tgz, or beside it with PACK_LOGS=0), or {}."""
    if (out / "facts.json").is_file():
        return json.loads((out / "facts.json").read_text())
    if (out / "logs.tgz").is_file():
        with tarfile.open(out / "logs.tgz") as tar:
            member = next((m for m in tar.getmembers() if Path(m.name).name == "facts.json"), None)
            if member is not None:
                return json.loads(tar.extractfile(member).read())
    return {}


def join_parts(parts: list[Path], target: Path) -> dict:
    """Concatenate ``parts`` (in name order) into ``target``; returns its size and sha256 and
    checks that the joined file opens as safetensors."""
    from core_ssl.checkpoint import read_safetensors_metadata

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for part in sorted(parts):
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    read_safetensors_metadata(target)  # a missing or damaged part fails here, naming the file
    return {"file": str(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target),
            "bytes": target.stat().st_size, "sha256": digest.hexdigest(), "parts": len(parts)}


def collect(out: Path, results: Path = RESULTS, store: Path = STORE) -> dict[str, list[str]]:
    """Copy the runs of one GPU check's ``out`` folder; returns the run names per kind."""
    facts = _facts(out)
    collected: dict[str, list[str]] = {}
    for kind, (archive, prefix, folder) in KINDS.items():
        if not (out / archive).is_file():
            continue
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(out / archive) as tar:
            tar.extractall(tmp, filter="data")
            collect_results.collect(Path(tmp), results / kind)
            names = sorted(p.parent.name for p in Path(tmp).glob("*/config.json"))
        for name in names:
            (results / kind / name / "gpu_facts.json").write_text(json.dumps(facts, indent=1) + "\n")
            parts = list(out.glob(f"{prefix}-{name}.safetensors.part*"))
            if parts:
                record = join_parts(parts, store / folder / f"{name}.safetensors")
                (results / kind / name / "weights.json").write_text(json.dumps(record, indent=1) + "\n")
        collected[kind] = names
    if (out / "ablate_runs.tgz").is_file():
        collected["ablate"] = collect_ablations(out / "ablate_runs.tgz", results / "ablate", facts)
    if (out / "rl_runs.tgz").is_file():  # CURL's Table 1 lives beside: results/rl_table1 for results/scale
        import rl_table1

        collected["rl"] = rl_table1.collect(out / "rl_runs.tgz", results.parent / "rl_table1")
    return collected


ABLATION_FILES = ("results.json", "results.md", "claims.md", "ablate_command.json", "*.png")


def collect_ablations(archive: Path, dest: Path, facts: dict) -> list[str]:
    """Copy each ablation of ``archive`` (one folder per ABLATE_RUNS name) into ``dest/<name>``:
    its cells' small records (as ``collect_results`` copies run folders) and its report files."""
    names = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        for folder in sorted(p.parent for p in Path(tmp).glob("*/ablate_command.json")):
            target = dest / folder.name
            collect_results.collect(folder / "cells", target / "cells")
            for pattern in ABLATION_FILES:
                for path in folder.glob(pattern):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
            (target / "gpu_facts.json").write_text(json.dumps(facts, indent=1) + "\n")
            names.append(folder.name)
    return names


def ablation_reports(folder: Path) -> list[Path]:
    """Rebuild every collected ablation's report from its cells (``vision_benchmarks.ablate
    --report-only`` with the flags in its ``ablate_command.json``)."""
    from vision_benchmarks import ablate

    written = []
    for command in sorted(folder.glob("*/ablate_command.json")):
        flags = json.loads(command.read_text())
        if not any(command.parent.glob("cells/*/cell.json")):
            continue
        ablate.main([*flags["ablation_flags"], "--report-only", "--device", "cpu", "--out", str(command.parent),
                     "--", *flags["pretrain_flags"]])
        written.append(command.parent / "results.md")
    return written


def _device(run: Path) -> tuple[str, str]:
    """(GPU or CPU name, torch version) the run trained on: its machine.jsonl, else gpu_facts.json."""
    lines = (run / "machine.jsonl").read_text().splitlines() if (run / "machine.jsonl").is_file() else []
    if lines:
        first = json.loads(lines[0])
        return first.get("cuda") or first.get("cpu_model", "?"), first.get("torch", "?")
    facts = _read_json(run / "gpu_facts.json") or {}
    return facts.get("gpu", "?"), facts.get("torch", "?")


def vision_rows(folder: Path) -> list[dict]:
    rows = []
    for run in sorted(p.parent for p in folder.glob("*/config.json")):
        config, summary = _read_json(run / "config.json"), _read_json(run / "summary.json") or {}
        knn, linear = _read_json(run / "eval_knn.json"), _read_json(run / "eval_linear.json")
        gpu, torch_version = _device(run)
        rows.append({"run": run.name, "method": config["method"], "seed": config.get("seed"),
                     "encoder": config.get("encoder"), "epochs": config.get("epochs"), "batch": config.get("batch_size"),
                     "steps": summary.get("steps"), "train_minutes": summary.get("train_minutes"),
                     "images_per_second": summary.get("images_per_second"), "gpu": gpu, "torch": torch_version,
                     "knn_top1": knn and knn["top1"], "knn_k": knn and knn.get("k"), "linear_top1": linear and linear["top1"]})
    return rows


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def vision_markdown(rows: list[dict]) -> str:
    lines = ["| run | method | encoder | epochs | batch | steps | minutes | images/s | GPU | torch | kNN top-1 | linear top-1 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['method']} | {r['encoder']} | {r['epochs']} | {r['batch']} | {r['steps']} | "
                     f"{_number(r['train_minutes'], 1)} | {_number(r['images_per_second'], 0)} | {r['gpu']} | "
                     f"{r['torch']} | {_number(r['knn_top1'])} | {_number(r['linear_top1'])} |")
    lines += ["", "Per method (mean over seeds, 95% Student-t interval where there are two seeds or more):", "",
              "| method | seeds | kNN top-1 | linear top-1 |", "| --- | ---: | ---: | ---: |"]
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        cells = []
        for key in ("knn_top1", "linear_top1"):
            values = [r[key] for r in mine if r[key] is not None]
            cells.append(format_seed_summary(seed_summary(values)) if values else "-")
        lines.append(f"| {method} | {len(mine)} | {cells[0]} | {cells[1]} |")
    lines += ["", "The open libraries' published ResNet-18 / CIFAR-10 numbers (their settings, not these runs'):", "",
              "| library | metric | settings | SimCLR | MoCo v2 | BYOL | SupCon |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for library, metric, settings, values in LIBRARY_RESULTS:
        cells = " | ".join(_number(values.get(m), 3) for m in ("simclr", "mocov2", "byol", "supcon"))
        lines.append(f"| {library} | {metric} | {settings} | {cells} |")
    return "\n".join(lines) + "\n"


def cut_rows(folder: Path) -> list[dict]:
    rows = []
    for run in sorted(p.parent for p in folder.glob("*/config.json")):
        config, summary = _read_json(run / "config.json"), _read_json(run / "summary.json") or {}
        evaluation = _read_json(run / "evaluation.json")
        gpu, torch_version = _device(run)
        row = {"run": run.name, "mode": config.get("mode"), "size": config.get("size"), "steps": summary.get("steps"),
               "epochs": summary.get("epochs"), "minutes": (summary.get("wall_clock_seconds") or 0) / 60,
               "gpu": gpu, "torch": torch_version, "fid": None, "identity_fid": None, "gain": None, "gain_low": None,
               "gain_high": None, "images": None}
        if evaluation:
            translated, identity = evaluation["translated"], evaluation["identity_baseline"]
            row.update(fid=translated["fid"], identity_fid=identity["fid"], gain=translated["fid_gain"],
                       gain_low=translated["fid_gain_low"], gain_high=translated["fid_gain_high"],
                       images=translated["images"])
        rows.append(row)
    return rows


def cut_verdict(row: dict) -> str:
    """Whether the generator beats the untranslated input: the FID gain's interval above 0."""
    if row["gain_low"] is None:
        return "not evaluated yet"
    if row["gain_low"] > 0:
        return "beats the identity"
    return "worse than the identity" if row["gain_high"] < 0 else "cannot be told from the identity"


def cut_markdown(rows: list[dict]) -> str:
    lines = ["| run | mode | px | epochs | steps | minutes | GPU | torch | held-out images | FID | identity FID | "
             "FID gain [95%] | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        gain = "-" if r["gain"] is None else f"{r['gain']:.1f} [{r['gain_low']:.1f}, {r['gain_high']:.1f}]"
        lines.append(f"| {r['run']} | {r['mode']} | {r['size']} | {r['epochs']} | {r['steps']} | {r['minutes']:.1f} | "
                     f"{r['gpu']} | {r['torch']} | {_number(r['images'])} | {_number(r['fid'], 1)} | "
                     f"{_number(r['identity_fid'], 1)} | {gain} | {cut_verdict(r)} |")
    return "\n".join(lines) + "\n"


def report(results: Path = RESULTS) -> list[Path]:
    written = []
    for kind, rows_of, markdown in (("vision", vision_rows, vision_markdown), ("cut", cut_rows, cut_markdown)):
        folder = results / kind
        rows = rows_of(folder) if folder.is_dir() else []
        if rows:
            (folder / "results.md").write_text(markdown(rows))
            written.append(folder / "results.md")
    if (results / "ablate").is_dir():
        written += ablation_reports(results / "ablate")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/scale)")
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("collect", parents=[common],
                         help="copy one GPU check's runs into the results folder, join their weights")
    col.add_argument("out", type=Path, help="the folder a gpu_check.sh call wrote ($OUT)")
    col.add_argument("--store", type=Path, default=STORE, help="where joined weights go (default: runs/scale, not committed)")
    sub.add_parser("report", parents=[common], help="write results.md beside the collected vision and CUT runs")
    nxt = sub.add_parser("next", parents=[common], help="the next planned vision runs, as gpu_check.sh VISION_RUNS lines")
    nxt.add_argument("--count", type=int, default=1, help="how many (one 200-epoch run fills a command)")
    args = parser.parse_args(argv)
    if args.command == "next":
        if args.count < 1:
            parser.error(f"--count must be at least 1, got {args.count}")
        print("\n".join(vision_pending(args.results)[:args.count]))
        return 0
    if args.command == "collect":
        if not args.out.is_dir():
            parser.error(f"{args.out} is not a folder: give the folder a gpu_check.sh call wrote its results to")
        collected = collect(args.out, args.results, args.store)
        if not collected:
            parser.error(f"{args.out} holds none of vision_runs.tgz, cut_runs.tgz, ablate_runs.tgz, rl_runs.tgz: "
                         "nothing to collect")
        for kind, names in collected.items():
            print(f"{kind}: {len(names)} run(s): {', '.join(names) or 'none'}")
    else:
        for path in report(args.results):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
