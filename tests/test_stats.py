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


# -- across training runs (seeds) ----------------------------------------------------------
import json

import numpy as np
from scipy.stats import mannwhitneyu, t, trim_mean

from src.evaluation.stats import (iqm, paired_seed_difference, probability_of_improvement,
                                  probability_of_improvement_ci, stratified_bootstrap_ci, verdict)


def test_iqm_is_the_quarter_trimmed_mean():
    # sorted 1 2 | 3 4 5 6 | 7 100: the middle half averages 4.5, the outlier is cut
    assert iqm([1, 2, 3, 4, 100, 5, 6, 7]) == pytest.approx(4.5)
    x = np.random.default_rng(1).normal(size=(7, 9))
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25, axis=-1))


def test_probability_of_improvement_hand_examples():
    assert probability_of_improvement([3, 4, 5], [0, 1, 2]) == 1.0
    assert probability_of_improvement([1, 2, 3], [1, 2, 3]) == 0.5
    # pairs (1,2) 0, (1,3) 0, (3,2) 1, (3,3) 1/2: 1.5 / 4
    assert probability_of_improvement([1, 3], [2, 3]) == pytest.approx(0.375)
    x, y = [0.2, 0.5, 0.5, 0.9], [0.1, 0.5, 0.7]
    u = mannwhitneyu(x, y, alternative="greater").statistic
    assert probability_of_improvement(x, y) == pytest.approx(u / 12)
    # averaged over tasks, as rliable does: (1 + 0.5) / 2
    assert probability_of_improvement({"g1": [3, 4], "g2": [1, 2]},
                                      {"g1": [0, 1], "g2": [1, 2]}) == pytest.approx(0.75)
    est, low, high = probability_of_improvement_ci({"g": [0.6, 0.7, 0.5]}, {"g": [0.4, 0.6, 0.3]})
    # 0.6 beats 0.4, 0.3 and ties 0.6; 0.7 beats all; 0.5 beats 0.4, 0.3: 7.5 / 9
    assert est == pytest.approx(7.5 / 9) and low <= est <= high <= 1


def test_stratified_bootstrap_resamples_within_tasks():
    scores = {"small": [0.00, 0.01, 0.02, 0.03, 0.04],
              "large": [1000.00, 1000.01, 1000.02, 1000.03, 1000.04, 1000.05, 1000.06]}
    seen = []

    def mean_of_task_means(d):
        seen.append(d)
        return np.mean([x.mean(-1) for x in d.values()], axis=0)

    est, low, high = stratified_bootstrap_ci(scores, mean_of_task_means, reps=500, seed=3)
    resampled = seen[1]
    for task, x in scores.items():
        assert resampled[task].shape == (500, len(x))  # each task keeps its count of runs
        assert np.isin(resampled[task], x).all()  # and draws only its own runs
    assert est == pytest.approx((0.02 + 1000.03) / 2)
    assert low <= est <= high and high - low < 0.05  # pooling runs across tasks would span ~500

    # one task: a plain bootstrap over runs, draws as documented
    x = np.array([0.3, 0.1, 0.4, 0.15, 0.9])
    means = x[np.random.default_rng(7).integers(0, 5, (300, 5))].mean(-1)
    got = stratified_bootstrap_ci({"g": x}, lambda d: d["g"].mean(-1), reps=300, seed=7)
    assert got == pytest.approx((x.mean(), *np.percentile(means, [2.5, 97.5])))


def test_paired_difference_removes_the_shared_seed_effect():
    seed_effect = np.array([0.1, 0.5, 0.3, 0.8, 0.2])
    a, b = seed_effect + np.array([0.09, 0.11, 0.10, 0.12, 0.08]), seed_effect
    d = paired_seed_difference(a, b)
    assert d["mean_diff"] == pytest.approx(0.1) and d["iqm_diff"] == pytest.approx(0.1)
    assert 0.08 <= d["ci"][0] < d["ci"][1] <= 0.12 and d["n_seeds"] == 5
    assert d["iqm_diff_ci"][0] >= 0.08 and d["iqm_diff_ci"][1] <= 0.12
    v = verdict(a, b, claimed_gain=0.1)
    assert v["iqm_a_ci"][1] - v["iqm_a_ci"][0] > 0.3  # unpaired, the seed effect dominates


BASE = np.array([0.30, 0.45, 0.40, 0.35, 0.50])


@pytest.mark.parametrize("diffs, expected, words", [
    ([0.08, 0.10, 0.12, 0.09, 0.11], "reproduced", "excludes 0"),
    # interval about [-0.01, 0.03]: covers 0, but its top is below the margin 0.05 (and above 0.025)
    ([0.04, -0.02, 0.03, 0.01, -0.01], "not reproduced", "below the margin"),
    ([-0.10, -0.12, -0.08, -0.11, -0.09], "not reproduced", "opposite"),
])
def test_verdict_decided_cases(diffs, expected, words):
    v = verdict(BASE + diffs, BASE, claimed_gain=0.10)
    assert (v["verdict"], v["margin"], v["seeds_needed"]) == (expected, 0.05, None)
    assert words in v["reason"]
    if words == "below the margin":
        assert v["ci"][0] < 0 and 0.025 < v["ci"][1] < 0.05
    # a lower-is-better metric: the claim is negative and the scores mirror
    mirrored = verdict(-(BASE + diffs), -BASE, claimed_gain=-0.10)
    assert mirrored["verdict"] == expected and mirrored["margin"] == 0.05


def test_verdict_small_but_real_gain_is_reproduced_with_a_note():
    v = verdict(BASE + [0.010, 0.012, 0.011, 0.009, 0.010], BASE, claimed_gain=0.10)
    assert v["verdict"] == "reproduced" and "size not" in v["reason"]


def test_verdict_inconclusive_states_the_seeds_that_would_decide():
    diffs = np.array([0.20, -0.15, 0.05, 0.10, -0.05])
    v = verdict(BASE + diffs, BASE, claimed_gain=0.10)
    assert v["verdict"] == "inconclusive" and v["ci"][0] < 0 < 0.05 < v["ci"][1]
    # gap = max(|0.03|, 0.05 - 0.03) = 0.03: excluding 0 needs fewer seeds than the margin
    n, sd = v["seeds_needed"], diffs.std(ddof=1)
    assert isinstance(n, int) and "exclude 0" in v["reason"]
    assert v["ci"] == pytest.approx(0.03 + np.array([-1, 1]) * t.ppf(0.975, 4) * sd / 5 ** 0.5)
    assert t.ppf(0.975, n - 1) * sd / np.sqrt(n) < 0.03 <= t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1)
    assert 70 < n < 100
    json.dumps(v)


def test_verdict_degenerate_cases():
    # mean exactly 0 with spread: 0 cannot be excluded, the margin can
    v = verdict(BASE[:4] + [0.2, -0.2, 0.1, -0.1], BASE[:4], claimed_gain=0.10)
    assert v["verdict"] == "inconclusive" and "exclude the margin" in v["reason"]
    sd = np.std([0.2, -0.2, 0.1, -0.1], ddof=1)
    n = v["seeds_needed"]
    assert t.ppf(0.975, n - 1) * sd / np.sqrt(n) < 0.05 <= t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1)
    # no spread: the interval is a point, so the rules decide, and say why
    same = verdict(BASE + 0.04, BASE, claimed_gain=0.10)
    assert same["verdict"] == "reproduced" and same["ci"] == pytest.approx([0.04, 0.04])
    assert "single point" in same["reason"]
    equal = verdict(BASE, BASE, claimed_gain=0.10)
    assert equal["verdict"] == "not reproduced" and equal["prob_improvement"] == 0.5
    # one seed: no spread to judge by, no number of seeds to promise
    one = verdict([0.9], [0.1], claimed_gain=0.10)
    assert (one["verdict"], one["seeds_needed"]) == ("inconclusive", None)
    json.dumps(one)
    with pytest.raises(ValueError):
        verdict(BASE, BASE, claimed_gain=0.0)
    with pytest.raises(ValueError):
        verdict(BASE, BASE[:3], claimed_gain=0.1)


def test_same_seed_same_output():
    a, b = BASE + [0.20, -0.15, 0.05, 0.10, -0.05], BASE
    assert verdict(a, b, 0.1, seed=5) == verdict(a, b, 0.1, seed=5)
    assert verdict(a, b, 0.1, seed=5)["ci_bootstrap"] != verdict(a, b, 0.1, seed=6)["ci_bootstrap"]
    scores = {"g1": [0.1, 0.4, 0.2], "g2": [0.7, 0.6, 0.9]}
    stat = lambda d: iqm(np.concatenate(list(d.values()), axis=-1))  # noqa: E731
    assert (stratified_bootstrap_ci(scores, stat, seed=2)
            == stratified_bootstrap_ci(scores, stat, seed=2))
