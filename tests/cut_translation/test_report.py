"""cut_translation.report on small fake run folders: the per-run table, the comparison of last
evaluations and the table over seeds, checked against direct computation."""

import json

import numpy as np
import pytest
from scipy import stats

from cut_translation import report


def _run(root, name, last_fid, share, mode="cut", lambda_nce=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"mode": mode, "lambda_nce": lambda_nce, "data": "toy.zip", "size": 32}))
    (run / "summary.json").write_text(json.dumps({"epochs": 2, "steps": 20, "wall_clock_seconds": 36.0,
                                                  "best": {"epoch": 2}}))
    rows = [{"epoch": 0, "fid": 200.0, "fid_low": 190.0, "fid_high": 210.0, "domain_share": 0.10, "images": 50},
            {"epoch": 1, "fid": 190.0, "domain_share": 0.2, "images": 50},
            {"epoch": 2, "fid": last_fid, "fid_low": last_fid - 5, "fid_high": last_fid + 5, "domain_share": share,
             "images": 50}]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_one_run_report_lists_every_epoch_with_intervals(tmp_path):
    run = _run(tmp_path, "cut-s1", 150.0, 0.6)
    text = report.run_report(run)
    assert "| 0 (identity baseline) | 200.0 [190.0, 210.0] | 0.100 | 50 |" in text
    assert "| 2 (best FID) | 150.0 [145.0, 155.0] | 0.600 | 50 |" in text


def test_an_fid_interval_that_excludes_its_point_is_marked_and_explained(tmp_path):
    """FID's basic interval targets the large-sample FID and can lie wholly below the n-image
    point: such a cell carries the mark, the table the footnote, and the training log says what
    the interval bounds."""
    from cut_translation.intervals import EXCLUDES_MARK, EXCLUDES_NOTE
    from cut_translation.train import _describe

    run = _run(tmp_path, "cut-s1", 169.3, 0.6)
    rows = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    rows[-1].update(fid_low=144.4, fid_high=153.9)
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = report.run_report(run)
    assert f"| 2 (best FID) | 169.3 [144.4, 153.9]{EXCLUDES_MARK} | 0.600 | 50 |" in text
    assert "| 0 (identity baseline) | 200.0 [190.0, 210.0] | 0.100 | 50 |" in text  # contains its point: no mark
    assert EXCLUDES_NOTE in text and EXCLUDES_NOTE in report.compare_runs([run])
    assert EXCLUDES_NOTE not in report.run_report(_run(tmp_path, "cut-s2", 150.0, 0.6))
    line = _describe({"fid": 169.3, "fid_low": 144.4, "fid_high": 153.9, "content": 0.8},
                     {"content_unrelated": 0.05})
    assert line.startswith("FID 169.30 (these n images; large-sample FID [144.40, 153.90])")


def test_arms_over_seeds_take_the_mean_and_t_interval_of_last_evaluations(tmp_path):
    cut = [_run(tmp_path, f"cut-s{seed}", fid, share) for seed, fid, share in [(1, 150, 0.6), (2, 160, 0.5), (3, 140, 0.7)]]
    gan = [_run(tmp_path, f"gan-only-s{seed}", fid, share, lambda_nce=0.0) for seed, fid, share in [(1, 170, 0.4), (2, 180, 0.3)]]
    stray = _run(tmp_path, "catdog-64", 120.0, 0.9)  # not <arm>-s<seed>: left out of the seed table
    assert list(report.group_by_arm([*cut, *gan, stray])) == ["cut", "gan-only"]
    table = report.compare_arms([*cut, *gan, stray])
    fids = np.array([150.0, 160.0, 140.0])
    half = stats.t.ppf(0.975, 2) * fids.std(ddof=1) / np.sqrt(3)
    assert f"| cut | 3 | 2 | {fids.mean():.1f} [{fids.mean() - half:.1f}, {fids.mean() + half:.1f}] | 0.600 [" in table
    assert "| identity (untranslated A) | 3 | 0 | 200.0 [200.0, 200.0] | 0.100 [" in table  # one per seed
    assert "| gan-only | 2 | 2 | 175.0 [" in table
    cache = tmp_path / "eval_features-s1.pt"  # a file a shell glob such as *-s* also catches
    cache.write_bytes(b"features")
    text = report.main([str(r) for r in [*cut, *gan, cache]])
    assert "eval_features" not in text and cache.read_bytes() == b"features"
    with pytest.raises(FileNotFoundError, match="none of .* is a run folder"):
        report.main([str(cache)])
    assert "Over seeds" in text and "Last evaluation of each run" in text
    # the claims: CUT's FID against GAN-only's (lower is better), Welch's interval of gan - cut
    welch = stats.ttest_ind([170.0, 180.0], [150.0, 160.0, 140.0], equal_var=False).confidence_interval()
    assert (f"| cut > gan-only | fid (lower is better) | CUT ablation: without PatchNCE FID is worse | "
            f"150.000 vs 175.000 | +25.000 [{welch.low:+.3f}, {welch.high:+.3f}] | **holds** |") in text
    assert "| cut > identity | domain_share (higher is better) |" in text and "content" not in report.compare_claims(cut)
    (gan[1] / "summary.json").unlink()  # a run still training is left out: one gan-only seed, no claim
    assert "gan-only" not in report.compare_claims([*cut, *gan])
    assert report.compare_arms([stray]) == ""


def test_a_run_in_progress_is_reported_as_such(tmp_path):
    run = _run(tmp_path, "cut-s1", 150.0, 0.6)
    (run / "summary.json").unlink()
    text = report.run_report(run)
    assert "in progress (no summary.json yet), evaluated up to epoch 2" in text
    assert "| 2 | 150.0 [145.0, 155.0] | 0.600 | 50 |" in text


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is .* a cut_translation.train run folder"):
        report.run_report(tmp_path)


def test_arm_curves_average_the_seeds_epoch_by_epoch_and_the_plot_is_written(tmp_path):
    cut = [_run(tmp_path, f"cut-s{seed}", fid, share) for seed, fid, share in [(1, 150, 0.6), (2, 160, 0.5), (3, 140, 0.7)]]
    curve = report.arm_curves(cut, "fid")
    assert [c[0] for c in curve] == [1, 2]
    assert curve[0][1:] == (190.0, 190.0, 190.0)  # every seed logged 190 at epoch 1: a zero-width interval
    fids = np.array([150.0, 160.0, 140.0])
    half = stats.t.ppf(0.975, 2) * fids.std(ddof=1) / np.sqrt(3)
    assert curve[1][1:] == pytest.approx((150.0, 150.0 - half, 150.0 + half))
    # one seed: the bare value, no interval
    assert report.arm_curves(cut[:1], "domain_share") == [(1, 0.2, None, None), (2, 0.6, None, None)]
    # an epoch not yet evaluated by every seed is left out
    rows = [json.loads(line) for line in (cut[2] / "eval.jsonl").read_text().splitlines()][:-1]
    (cut[2] / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [c[0] for c in report.arm_curves(cut, "fid")] == [1]

    text = report.main([*map(str, cut), "--plot", str(tmp_path / "curves.png")])
    assert (tmp_path / "curves.png").stat().st_size > 10_000 and "curves.png" in text
    assert report.plot_arms([tmp_path / "catdog-64"], tmp_path / "none.png") is None


def test_compare_samples_stacks_the_inputs_and_each_arm_s_translations(tmp_path):
    import torch
    from PIL import Image
    from torchvision.utils import save_image

    colours = {"cut": (1.0, 0.0, 0.0), "gan-only": (0.0, 0.0, 1.0)}
    runs = []
    for arm, colour in colours.items():
        for seed in (1, 2):
            run = _run(tmp_path, f"{arm}-s{seed}", 150.0, 0.5)
            (run / "samples").mkdir()
            rows = [torch.full((3, 3, 32, 32), 0.5),                                       # input A: grey
                    torch.tensor(colour).view(1, 3, 1, 1).expand(3, 3, 32, 32),          # G(A): the arm's colour
                    torch.zeros(3, 3, 32, 32), torch.ones(3, 3, 32, 32)]
            save_image(torch.cat(rows), run / "samples" / "epoch_002.png", nrow=3, padding=2)
            runs.append(run)
    path = report.compare_samples(runs, tmp_path / "samples.png", scale=1)
    with Image.open(path) as image:
        image = image.convert("RGB")
        # label margin + the grid's width (2 + 3 x 34); three rows of 32 px images with 2 px padding on each side
        assert image.size == (150 + 2 + 3 * 34, 3 * 36)
        # the middle of the first image of each row: grey input, then red (cut), then blue (gan-only)
        x = 150 + 2 + 16
        assert image.getpixel((x, 2 + 16))[0] in range(126, 130)
        assert image.getpixel((x, 36 + 2 + 16)) == (255, 0, 0)
        assert image.getpixel((x, 72 + 2 + 16)) == (0, 0, 255)
    assert report.compare_samples(runs, tmp_path / "none.png", seed=7) is None
