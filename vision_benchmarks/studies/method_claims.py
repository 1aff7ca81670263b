"""The papers' comparative claims, read off a seeded results table.

Each claim is "method X scores higher than method Y" on a CIFAR-10 protocol (linear probe or
kNN top-1). With the per-seed values of both rows it is judged by Welch's 95% interval of the
difference of their means (:mod:`core_ssl.claims`): **holds** when the whole interval is above 0,
**fails** when it is below (Y is better here), **not resolved** when it contains 0 (the seeds
cannot tell them apart at this budget). The verdict is about this
budget and this encoder only; the papers' settings are far larger.
"""

from __future__ import annotations

from typing import Sequence

from core_ssl.claims import Claim, claims_markdown, judge_claim

__all__ = ["PAPER_CLAIMS", "judge_claims", "claims_markdown"]


PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("simclr", "rotnet", "SimCLR, MoCo: contrastive learning beats the pretext tasks"),
    Claim("simclr", "jigsaw", "SimCLR, MoCo: contrastive learning beats the pretext tasks"),
    Claim("simclr", "context_encoder", "SimCLR, MoCo: contrastive learning beats the pretext tasks"),
    Claim("mocov2", "rotnet", "SimCLR, MoCo: contrastive learning beats the pretext tasks"),
    Claim("mocov2", "mocov1", "MoCo v2: an MLP head, blur and t = 0.2 improve MoCo"),
    Claim("simclrv2", "simclr", "SimCLRv2: a deeper head, probed from its first layer"),
    Claim("byol", "simclr", "BYOL: no negatives needed, above SimCLR"),
    Claim("pirl", "jigsaw", "PIRL: invariance to the permutation beats predicting it"),
    Claim("supcon", "supervised", "SupCon: CIFAR-10 96.0 vs cross-entropy 95.0 (ResNet-50)"),
    Claim("rotnet", "random", "pre-training beats a random encoder"),
)


def judge_claims(rows: Sequence[dict], key: str = "linear_top1",
                 claims: Sequence[Claim] = PAPER_CLAIMS) -> list[dict]:
    """One :func:`core_ssl.claims.judge_claim` record per claim whose two methods are both in
    ``rows`` (each row with ``method``, ``label`` and ``<key>_seeds``, as
    ``vision_table.aggregate`` gives them) with at least two seeds each."""
    by_method = {row["method"]: row for row in rows}
    judged = []
    for claim in claims:
        if claim.better not in by_method or claim.worse not in by_method:
            continue
        better, worse = (by_method[m][f"{key}_seeds"] for m in (claim.better, claim.worse))
        if len(better) < 2 or len(worse) < 2:
            continue
        judged.append(judge_claim(claim, better, worse, key, by_method[claim.better].get("label"),
                                  by_method[claim.worse].get("label")))
    return judged
