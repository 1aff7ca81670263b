"""The CUT paper's comparative claims, judged on the last evaluations of seeded runs.

Arms are the run folders' ``<arm>`` names of ``scripts/cut_compare.sh`` (``cut``, ``fastcut``,
``gan-only``) plus ``identity``: the untranslated held-out images, one evaluation per seed.
Each claim compares two arms on one measure of the evaluation (FID and KID: lower is better;
domain-B share and content: higher is better) by Welch's 95% interval over seeds
(:mod:`core_ssl.claims`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from core_ssl.claims import Claim, claims_markdown, judge_claim

__all__ = ["CUT_CLAIMS", "judge_arms", "claims_markdown"]

CUT_CLAIMS: tuple[Claim, ...] = (
    Claim("cut", "identity", "CUT: translated images are closer to domain B than the inputs", "fid",
          lower_is_better=True),
    Claim("cut", "identity", "CUT: translated images look like domain B", "domain_share"),
    Claim("fastcut", "identity", "FastCUT: translated images look like domain B", "domain_share"),
    Claim("cut", "fastcut", "CUT paper: FID 76.2 (CUT) vs 94.0 (FastCUT) on Cat->Dog", "fid",
          lower_is_better=True),
    Claim("cut", "gan-only", "CUT ablation: without PatchNCE the input's content is lost", "content"),
    Claim("cut", "gan-only", "CUT ablation: without PatchNCE FID is worse", "fid", lower_is_better=True),
)


def judge_arms(evaluations: Mapping[str, Sequence[dict]], claims: Sequence[Claim] = CUT_CLAIMS) -> list[dict]:
    """One :func:`core_ssl.claims.judge_claim` record per claim whose two arms have at least two
    evaluations (seeds) carrying its measure; ``evaluations`` maps an arm (``identity``
    included) to its last evaluation per seed (``eval.jsonl`` rows)."""
    judged = []
    for claim in claims:
        values = [[row[claim.measure] for row in evaluations.get(arm, ()) if claim.measure in row]
                  for arm in (claim.better, claim.worse)]
        if min(len(v) for v in values) >= 2:
            judged.append(judge_claim(claim, *values))
    return judged
