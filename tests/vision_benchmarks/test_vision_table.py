"""benchmarks/vision_table.py's transfer table: per method and dataset, the mean top-1 over
seeds and its 95% t interval, checked against a direct computation; finished evaluations are
read back, not recomputed."""

import json

import numpy as np
import pytest
from scipy import stats

from benchmarks import vision_table


def _row(method, label, linear, knn):
    return {"label": label, "method": method, "uses_labels": False, "seeds": [0, 1, 2],
            "linear_top1": float(np.mean(linear)), "linear_top1_low": 0.1, "linear_top1_high": 0.9,
            "knn_top1": float(np.mean(knn)), "knn_top1_low": None, "knn_top1_high": None}


def _record(linear, knn):
    return {"protocols": {"linear": {"top1": linear}, "knn": {"top1": knn}}}


def test_transfer_rows_average_each_dataset_over_seeds_with_t_intervals():
    rows = [_row("simclr", "SimCLR", [0.5, 0.52, 0.54], [0.4, 0.41, 0.42])]
    fashion = [0.80, 0.82, 0.78]
    records = {("simclr", seed, "fashion-mnist"): _record(value, value - 0.1) for seed, value in enumerate(fashion)}
    records |= {("simclr", seed, "catdog"): _record(0.6, 0.55) for seed in range(3)}
    table = vision_table.transfer_rows(rows, records, ["fashion-mnist", "catdog"])
    entry = table[0]
    half = stats.t.ppf(0.975, 2) * np.std(fashion, ddof=1) / np.sqrt(3)
    assert entry["fashion-mnist"]["linear"]["mean"] == pytest.approx(0.80)
    assert (entry["fashion-mnist"]["linear"]["low"], entry["fashion-mnist"]["linear"]["high"]) == \
        pytest.approx((0.80 - half, 0.80 + half))
    assert entry["fashion-mnist"]["knn"]["seeds"] == pytest.approx([0.70, 0.72, 0.68])
    assert entry["catdog"]["linear"]["low"] == pytest.approx(0.6)  # identical seeds: a zero-width interval
    assert entry["cifar10"]["linear"] == {"mean": pytest.approx(0.52), "low": 0.1, "high": 0.9}

    text = vision_table.transfer_markdown(table, ["fashion-mnist", "catdog"], "2 epochs")
    assert "| method | labels | seeds | cifar10 linear | cifar10 kNN | fashion-mnist linear |" in text
    assert (f"| SimCLR | no | 3 | 0.5200 [0.1000, 0.9000] | 0.4100 | 0.8000 [{0.80 - half:.4f}, {0.80 + half:.4f}] |"
            in text)


def test_a_finished_transfer_evaluation_is_read_back(tmp_path):
    run = tmp_path / "simclr-s0"
    run.mkdir()
    (run / "eval_transfer_fashion-mnist.json").write_text(json.dumps(_record(0.81, 0.75)))
    cell = {"run": str(run), "method": "simclr", "seed": 0}
    assert vision_table.transfer_cell(cell, "fashion-mnist", "cpu")["protocols"]["linear"]["top1"] == 0.81


def _robustness_record(run, clean, per_severity, baseline=None, mce=None):
    record = {"run": str(run), "test_images": 100, "seed": 0, "clean": clean,
              "accuracy": {"gaussian_noise": {str(s + 1): a for s, a in enumerate(per_severity)},
                           "fog": {str(s + 1): a - 0.1 for s, a in enumerate(per_severity)}}}
    if baseline is not None:
        record.update(baseline=str(baseline), mce=mce, relative_mce=mce + 0.1)
    return record


def test_robustness_over_seeds_scores_each_seed_against_the_baseline_s_same_seed(tmp_path):
    from vision_benchmarks.evaluation.robustness import format_robustness_over_seeds

    cells, curves = [], [0.7, 0.6, 0.5, 0.4, 0.3]
    for seed, (mce, shift) in enumerate([(0.90, 0.00), (0.80, 0.02), (0.85, 0.04)]):
        for method, label in (("supervised", "supervised (CE)"), ("supcon", "SupCon")):
            run = tmp_path / f"{method}-s{seed}"
            run.mkdir()
            base = tmp_path / f"supervised-s{seed}"
            record = (_robustness_record(run, 0.8, curves) if method == "supervised" else
                      _robustness_record(run, 0.75, [a + shift for a in curves], baseline=base, mce=mce))
            (run / "eval_robustness.json").write_text(json.dumps(record))
            cells.append({"method": method, "label": label, "seed": seed, "run": str(run)})
    text = vision_table.run_robustness(cells, ["supcon"], "supervised", 100, "cpu", tmp_path)
    summary = json.loads((tmp_path / "robustness.json").read_text())["models"]
    supcon, base = summary["SupCon"], summary["supervised (CE) (baseline)"]
    mces = [0.90, 0.80, 0.85]
    half = stats.t.ppf(0.975, 2) * np.std(mces, ddof=1) / np.sqrt(3)
    assert (supcon["mce"]["mean"], supcon["mce"]["low"], supcon["mce"]["high"]) == \
        pytest.approx((0.85, 0.85 - half, 0.85 + half))
    assert base["mce"]["mean"] == 1.0 and base["relative_mce"]["seeds"] == [1.0, 1.0, 1.0]
    # severity 1: the mean over the two corruptions (0.7 + shift and 0.6 + shift), averaged over seeds
    assert supcon["by_severity"][0]["mean"] == pytest.approx(0.75)
    assert supcon["by_severity"][1]["mean"] == pytest.approx(0.65 + 0.02)
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    assert "| SupCon | 3 | 0.7500 [0.7500, 0.7500] | 0.6700 [" in text
    assert text.endswith(format_robustness_over_seeds(summary))

    with pytest.raises(SystemExit, match="needs rows"):
        vision_table.run_robustness(cells, ["byol"], "supervised", 100, "cpu", tmp_path)


def test_a_seed_without_a_relative_mce_is_left_out_of_that_mean():
    from vision_benchmarks.evaluation.robustness import format_robustness_over_seeds, robustness_over_seeds

    records = [_robustness_record("a", 0.8, [0.7] * 5, baseline="b", mce=0.9),
               _robustness_record("a", 0.8, [0.7] * 5, baseline="b", mce=0.7)]
    records[1]["relative_mce"] = None
    summary = robustness_over_seeds({"SupCon": records})
    assert summary["SupCon"]["relative_mce"]["seeds"] == [1.0] and summary["SupCon"]["mce"]["mean"] == pytest.approx(0.8)
    records[0]["relative_mce"] = None
    summary = robustness_over_seeds({"SupCon": records})
    assert summary["SupCon"]["relative_mce"] is None
    assert format_robustness_over_seeds(summary).rstrip().endswith("| undefined |")


def _cell(method, seed, linear, knn):
    return {"label": method.upper(), "method": method, "uses_labels": False, "seed": seed, "linear_top1": linear,
            "knn_top1": knn, "epochs": 2.0, "steps": 10, "train_minutes": 1.0, "images_per_second": 100.0}


def test_claims_are_judged_by_welch_s_interval_of_the_seed_means(tmp_path):
    cells = [_cell("simclr", s, v, k) for s, (v, k) in enumerate([(0.53, 0.46), (0.54, 0.47), (0.535, 0.45)])]
    cells += [_cell("rotnet", s, v, k) for s, (v, k) in enumerate([(0.557, 0.485), (0.559, 0.487), (0.556, 0.48)])]
    cells += [_cell("jigsaw", s, v, k) for s, (v, k) in enumerate([(0.44, 0.40), (0.45, 0.46), (0.445, 0.43)])]
    cells += [_cell("mocov2", 0, 0.52, 0.43)]  # one seed: its claims are left out, not judged
    rows = vision_table.aggregate(cells)
    text = vision_table.write_claims(rows, "2 epochs", tmp_path)
    saved = json.loads((tmp_path / "claims.json").read_text())
    linear = {(r["better"], r["worse"]): r for r in saved["linear_top1"]}
    assert set(linear) == {("simclr", "rotnet"), ("simclr", "jigsaw")}
    expected = stats.ttest_ind([0.53, 0.54, 0.535], [0.557, 0.559, 0.556], equal_var=False).confidence_interval()
    assert (linear["simclr", "rotnet"]["difference"]["low"], linear["simclr", "rotnet"]["difference"]["high"]) == \
        pytest.approx((expected.low, expected.high))
    assert linear["simclr", "rotnet"]["verdict"] == "fails" and linear["simclr", "jigsaw"]["verdict"] == "holds"
    knn = {(r["better"], r["worse"]): r["verdict"] for r in saved["knn_top1"]}
    assert knn["simclr", "jigsaw"] == "not resolved"  # 0.46 vs 0.43 with a wide Jigsaw spread
    assert "| SIMCLR > ROTNET |" in text and "**fails**" in text and (tmp_path / "claims.md").read_text() == text


def test_a_copied_table_regenerates_from_its_files_alone(tmp_path):
    """Cells copied elsewhere (runs/ -> results/) are read back where they now are: the table,
    claims, transfer and robustness records come from the copies, nothing is re-evaluated."""
    for method, seed, linear in [("supervised", 0, 0.58), ("supervised", 1, 0.59), ("supcon", 0, 0.54),
                                 ("supcon", 1, 0.55)]:
        run = tmp_path / "results" / f"{method}-s{seed}"
        run.mkdir(parents=True)
        row = _cell(method, seed, linear, linear - 0.05) | {"run": f"runs/gone/{method}-s{seed}"}
        (run / "table_row.json").write_text(json.dumps(row))
        (run / "eval_transfer_catdog.json").write_text(json.dumps(_record(0.6, 0.55)))
        base = f"runs/gone/supervised-s{seed}"
        record = (_robustness_record(run, linear, [0.5] * 5) if method == "supervised" else
                  _robustness_record(run, linear, [0.45] * 5, baseline=base, mce=0.9))
        (run / "eval_robustness.json").write_text(json.dumps(record))
    flags = ["--epochs", "2", "--methods", "supcon", "supervised", "--out", str(tmp_path / "results"),
             "--transfer", "catdog", "--robustness", "supcon", "--corruption-images", "100", "--report-only"]
    rows = vision_table.main(flags + ["--seeds", "0", "1", "2"])  # seed 2 never ran: listed, left out, not trained
    assert not (tmp_path / "results" / "supcon-s2").exists()
    assert [r["linear_top1"] for r in rows] == pytest.approx([0.545, 0.585])
    assert all(c["run"].startswith(str(tmp_path / "results")) for r in rows for c in r["cells"])
    assert "| SUPCON | 2 |" in (tmp_path / "results" / "robustness.md").read_text()
    assert (tmp_path / "results" / "transfer.md").is_file() and (tmp_path / "results" / "claims.md").is_file()
    with pytest.raises(SystemExit, match="no robustness record on 500 images"):
        vision_table.main([*flags[:-2], "500", "--report-only", "--seeds", "0", "1"])
    with pytest.raises(SystemExit, match="no finished cell"):
        vision_table.main(["--epochs", "2", "--out", str(tmp_path / "empty"), "--report-only"])

