"""core_ssl.claims: a claim's verdict is Welch's interval of the difference, oriented so that a
positive difference is the claimed direction, for higher- and lower-is-better measures."""

import pytest
from scipy import stats

from core_ssl.claims import Claim, claims_markdown, judge_claim


def test_a_lower_is_better_claim_is_judged_on_the_negated_difference():
    cut, identity = [183.0, 185.0, 180.0], [97.0, 97.2, 96.9]
    record = judge_claim(Claim("cut", "identity", "CUT paper", "FID", lower_is_better=True), cut, identity)
    welch = stats.ttest_ind(identity, cut, equal_var=False).confidence_interval()  # identity - cut
    assert (record["difference"]["low"], record["difference"]["high"]) == pytest.approx((welch.low, welch.high))
    assert record["difference"]["point"] == pytest.approx(sum(identity) / 3 - sum(cut) / 3)
    assert record["verdict"] == "fails" and record["measure"] == "FID"
    higher = judge_claim(Claim("a", "b", "s"), [0.6, 0.62, 0.61], [0.5, 0.52, 0.51], measure="top-1")
    assert higher["verdict"] == "holds" and higher["difference"]["point"] == pytest.approx(0.1)
    text = claims_markdown([record, higher], "Claims:", digits=1)
    assert "| cut > identity | FID (lower is better) | CUT paper | 182.7 vs 97.0 | -85.6 [" in text
    assert "**fails**" in text and "| a > b | top-1 (higher is better) |" in text
