"""Wilson score interval against hand-computed values (z = 1.96)."""
import pytest

from src.evaluation.stats import rate_summary, wilson_interval


@pytest.mark.parametrize("successes, n, low, high", [
    # 0/10: centre = (z²/2n)/(1+z²/n) = 0.19208/1.38416 = 0.13877 = half-width
    (0, 10, 0.0, 0.277540),
    # 5/10: 0.5 ± (1.96/1.38416)·sqrt(0.025 + 0.009604) = 0.5 ± 0.263408
    (5, 10, 0.236593, 0.763407),
    # 10/10 mirrors 0/10
    (10, 10, 0.722460, 1.0),
    # 1/1: centre (1 + 1.9208)/4.8416 = 0.60328, half-width (1.96/4.8416)·0.98 = 0.39672
    (1, 1, 0.206549, 1.0),
])
def test_wilson_known_counts(successes, n, low, high):
    got = wilson_interval(successes, n)
    assert got == pytest.approx((low, high), abs=1e-5)


def test_wilson_is_symmetric_and_narrows_with_n():
    low, high = wilson_interval(3, 20)
    mirrored = wilson_interval(17, 20)
    assert (low, high) == pytest.approx((1 - mirrored[1], 1 - mirrored[0]))
    assert wilson_interval(30, 200)[1] - wilson_interval(30, 200)[0] < high - low


def test_no_trials_is_the_whole_interval_and_bad_counts_fail():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert rate_summary(0, 0)["rate"] is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rate_summary_fields():
    assert rate_summary(5, 10) == {"rate": 0.5, "low": 0.2366, "high": 0.7634,
                                   "successes": 5, "n": 10}


def test_paired_comparison_counts_discordant_pairs_and_exact_p():
    from scipy.stats import binomtest

    from src.evaluation.stats import compare_paired, detectable_difference, mcnemar_exact

    assert mcnemar_exact(10, 2) == pytest.approx(binomtest(2, 12, 0.5).pvalue)
    assert mcnemar_exact(0, 0) == 1.0
    a = [True] * 10 + [False] * 30
    b = [False] * 8 + [True] * 2 + [False] * 30
    c = compare_paired(a, b, [float(x) for x in a], [float(x) for x in b])
    assert (c["only_a"], c["only_b"], c["pairs"]) == (8, 0, 40)
    assert c["difference"] == pytest.approx(0.2) and c["mcnemar_p"] < 0.01
    assert c["paired_detectable_difference"] < c["detectable_difference_worst_case"]
    # docs/method.md §13's example
    assert detectable_difference(0.3, 150) == pytest.approx(0.148, abs=0.002)


def test_paired_bootstrap_resamples_whole_clusters():
    """Two records of one episode share its outcome: resampling episodes (not records) widens
    the interval, counts clusters, and states a detectable difference."""
    from src.evaluation.stats import paired_bootstrap

    a = [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.5]
    b = [0.5] * 10
    clusters = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    per_record = paired_bootstrap(a, b, seed=0)
    per_episode = paired_bootstrap(a, b, seed=0, clusters=clusters)
    assert per_episode["clusters"] == 5 and per_episode["pairs"] == 10
    assert per_episode["difference"] == per_record["difference"] == 0.0
    assert per_episode["high"] - per_episode["low"] > per_record["high"] - per_record["low"]
    assert per_episode["detectable_difference"] > per_record["detectable_difference"] > 0
    assert paired_bootstrap([0.5, 0.5], [0.5, 0.5])["detectable_difference"] is None
