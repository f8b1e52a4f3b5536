"""Confidence intervals for evaluation rates.

Evaluation runs a few dozen episodes per policy, where the normal approximation to a binomial
proportion breaks down (it gives intervals outside [0, 1] and zero width at 0/n). The Wilson
score interval stays inside [0, 1] and keeps a sensible width at the extremes.
"""
from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (z = 1.96: 95 %).

    With no trials nothing is known, so the interval is the whole of [0, 1].
    """
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def rate_summary(successes: int, n: int, digits: int = 4) -> dict:
    """A rate as stored in metrics files: the point estimate, its 95 % interval and the counts."""
    low, high = wilson_interval(successes, n)
    return {"rate": round(successes / n, digits) if n else None, "low": round(low, digits),
            "high": round(high, digits), "successes": successes, "n": n}


# -- paired comparisons (docs/method.md §13) -----------------------------------------------
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided alpha = 0.05, 80 % power


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: among the discordant pairs, is "only A succeeded" as
    likely as "only B succeeded"? (A binomial test of only_a out of only_a + only_b at 1/2.)"""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def detectable_difference(p: float, n: int) -> float:
    """Smallest difference of two proportions near ``p`` (n episodes each, unpaired) that a
    two-sided test at alpha 0.05 detects with 80 % power: (z_a + z_b) * sqrt(2 p (1 - p) / n).
    At p = 0 or 1 the variance term is taken at one success, so the figure never claims 0."""
    p = min(max(p, 1 / (2 * n)), 1 - 1 / (2 * n))
    return (Z_ALPHA + Z_POWER) * math.sqrt(2 * p * (1 - p) / n)


def paired_detectable_difference(discordant: float, n: int) -> float:
    """The same for n pairs whose outcomes differ with probability ``discordant``: the paired
    difference has variance at most discordant / n (pairing helps when policies agree often).
    At no observed discordance one discordant pair is assumed."""
    return (Z_ALPHA + Z_POWER) * math.sqrt(max(discordant, 1 / n) / n)


def paired_bootstrap(a: list[float], b: list[float], resamples: int = 2000,
                     seed: int = 0, clusters: list | None = None) -> dict:
    """Mean of a - b over pairs, its 95 % percentile interval, a two-sided bootstrap p-value
    (twice the share of resampled means on the far side of 0) and the smallest mean difference
    a paired test detects at 80 % power ((z_a + z_b) times the bootstrap standard error;
    None when no pair differs). ``clusters`` (one label per pair): whole clusters are resampled, since pairs of
    one episode are correlated, and n counts clusters."""
    import numpy as np

    diff = np.asarray(a, float) - np.asarray(b, float)
    labels, member = np.unique(np.arange(len(diff)) if clusters is None else np.asarray(clusters),
                               return_inverse=True)
    sums = np.bincount(member, weights=diff, minlength=len(labels))
    sizes = np.bincount(member, minlength=len(labels)).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    if not diff.any():
        p = 1.0
    else:
        p = min(1.0, 2 * min(float((means <= 0).mean()), float((means >= 0).mean())))
    spread = float(means.std())  # the standard error of the mean, clusters respected
    result = {"difference": round(float(diff.mean()), 6), "low": round(float(low), 6),
              "high": round(float(high), 6), "p_value": round(p, 4), "pairs": len(diff),
              "detectable_difference": (round((Z_ALPHA + Z_POWER) * spread, 6)
                                        if diff.any() else None)}
    if clusters is not None:
        result["clusters"] = len(labels)
    return result


def compare_paired(success_a: list[bool], success_b: list[bool], reward_a: list[float],
                   reward_b: list[float], seed: int = 0) -> dict:
    """Policy A vs B over the same episodes (pair i: the same seed and seat for both): the
    difference of the main rate with McNemar's exact test, the paired bootstrap of the mean
    reward, and the smallest rate difference this design detects (unpaired bound and paired)."""
    n = len(success_a)
    only_a = sum(a and not b for a, b in zip(success_a, success_b))
    only_b = sum(b and not a for a, b in zip(success_a, success_b))
    pooled = (sum(success_a) + sum(success_b)) / (2 * n)
    return {
        "pairs": n,
        "rate_a": round(sum(success_a) / n, 4), "rate_b": round(sum(success_b) / n, 4),
        "difference": round((sum(success_a) - sum(success_b)) / n, 4),
        "only_a": only_a, "only_b": only_b,
        "mcnemar_p": round(mcnemar_exact(only_a, only_b), 4),
        "detectable_difference": round(detectable_difference(pooled, n), 4),
        "detectable_difference_worst_case": round(detectable_difference(0.5, n), 4),
        "paired_detectable_difference": round(
            paired_detectable_difference((only_a + only_b) / n, n), 4),
        "mean_reward": paired_bootstrap(reward_a, reward_b, seed=seed),
    }


# -- across training runs (seeds), after Agarwal et al. 2021 (rliable) ----------------------
# A few runs per variant: point estimates alone mislead, so every figure carries a percentile
# bootstrap interval over runs. Statistics take arrays whose last axis is the runs, so one
# call evaluates all resamples at once.

def iqm(scores, axis: int = -1):
    """Interquartile mean (rliable's IQM): the mean of the middle half, robust to one odd run
    yet less noisy than the median."""
    from scipy.stats import trim_mean

    return trim_mean(scores, 0.25, axis=axis)


def _percentile_interval(values, alpha: float) -> tuple[float, float]:
    import numpy as np

    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def stratified_bootstrap_ci(scores_by_task: dict, statistic, reps: int = 2000, seed: int = 0,
                            alpha: float = 0.05) -> tuple[float, float, float]:
    """``statistic`` on the scores and its percentile interval, resampling runs with
    replacement within each task (game) independently, so every resample keeps each task's
    number of runs and no task stands in for another. ``statistic`` maps {task: array (..., runs)}
    to an array (...). Returns (estimate, low, high)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    data = {task: np.asarray(x, float) for task, x in scores_by_task.items()}
    resampled = {task: x[rng.integers(0, len(x), (reps, len(x)))] for task, x in data.items()}
    return (float(statistic(data)),
            *_percentile_interval(statistic(resampled), alpha))


def probability_of_improvement(x, y):
    """P(X > Y) with ties counted 1/2 (Mann-Whitney U / (n m)), for runs of X and Y on the last
    axis; given {task: runs} for both, the mean over tasks, as rliable reports it."""
    import numpy as np

    if isinstance(x, dict):
        return np.mean([probability_of_improvement(x[t], y[t]) for t in x], axis=0)
    x, y = np.asarray(x, float)[..., :, None], np.asarray(y, float)[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def probability_of_improvement_ci(x_by_task: dict, y_by_task: dict, reps: int = 2000,
                                  seed: int = 0, alpha: float = 0.05
                                  ) -> tuple[float, float, float]:
    """Probability of improvement with its interval: X's and Y's runs are resampled
    independently within each task (rliable's stratified independent bootstrap)."""
    joint = {**{("x", t): v for t, v in x_by_task.items()},
             **{("y", t): v for t, v in y_by_task.items()}}
    return stratified_bootstrap_ci(
        joint, lambda d: probability_of_improvement({t: d["x", t] for t in x_by_task},
                                                    {t: d["y", t] for t in x_by_task}),
        reps, seed, alpha)


def paired_seed_difference(a, b, reps: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """A - B per seed: variants trained with one seed share its offline data, so the seed is the
    pair. Mean and IQM of the differences with intervals over seeds (one seed draw for both).
    ``ci_t`` is the t interval beside the bootstrap ``ci``: over 2-5 seeds the percentile
    bootstrap is much narrower (with no true difference, its low end is above 0 in 10-24 % of
    cases instead of 2.5 %)."""
    import numpy as np
    from scipy.stats import t

    diff = np.asarray(a, float) - np.asarray(b, float)
    n = len(diff)
    mean = stratified_bootstrap_ci({"d": diff}, lambda d: d["d"].mean(-1), reps, seed, alpha)
    middle = stratified_bootstrap_ci({"d": diff}, lambda d: iqm(d["d"]), reps, seed, alpha)
    sd = float(diff.std(ddof=1)) if n > 1 else None
    half = float(t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n) if n > 1 else None
    return {"n_seeds": n, "mean_diff": mean[0], "ci": list(mean[1:]), "sd": sd,
            "ci_t": [mean[0] - half, mean[0] + half] if n > 1 else None,
            "iqm_diff": middle[0], "iqm_diff_ci": list(middle[1:])}


def _seeds_needed(sd: float, gap: float, alpha: float, n_now: int) -> int:
    """Smallest n (more than now) with t_{1-alpha/2, n-1} * sd / sqrt(n) < gap: an interval of
    that half-width around the observed mean would clear the gap."""
    from scipy.stats import norm, t

    n = max(n_now + 1, 2, math.ceil((norm.ppf(1 - alpha / 2) * sd / gap) ** 2))  # z < t
    while t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n) >= gap:
        n += 1
    return n


def verdict(a, b, claimed_gain: float, margin_fraction: float = 0.5, reps: int = 2000,
            seed: int = 0, alpha: float = 0.05) -> dict:
    """Does A beat B on one game as the paper claims? ``a``, ``b``: one score per seed, in seed
    order; ``claimed_gain``: the paper's smallest gain of A over B in this game's metric (its
    sign is the claimed direction). Rules, on differences oriented to the claimed direction:
    reproduced if the mean is positive and the t interval's low end is above 0 (the t interval over
    seeds, not the percentile bootstrap, which is far too narrow for 2-5 seeds); not reproduced if
    the interval's high end is below the margin (margin_fraction * |claimed_gain|), the interval
    below 0 being the opposite; otherwise inconclusive, with the seeds that would decide.
    prob_improvement is P(A better than B in the claimed direction) over seeds, unpaired."""
    import numpy as np

    if claimed_gain == 0:
        raise ValueError("claimed_gain must be nonzero: its sign is the claimed direction")
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"need one score per seed for both, got {len(a)} and {len(b)}")
    sign = 1.0 if claimed_gain > 0 else -1.0
    margin = margin_fraction * abs(claimed_gain)
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = paired_seed_difference(a, b, reps, seed, alpha)
    mean = sign * diff["mean_diff"]
    low, high = sorted(sign * v for v in (diff["ci_t"] or diff["ci"]))
    iqm_a, iqm_b = (stratified_bootstrap_ci({"s": s}, lambda d: iqm(d["s"]), reps, seed, alpha)
                    for s in (a, b))
    poi = probability_of_improvement_ci({"s": sign * a}, {"s": sign * b}, reps, seed, alpha)
    n, sd, needed = len(a), diff["sd"], None
    if n == 1:
        result, reason = "inconclusive", ("one seed: no spread across runs, so no interval "
                                          "and no estimate of the seeds needed")
    elif mean > 0 and low > 0:
        result, reason = "reproduced", "the interval of the mean difference excludes 0"
        if high < margin:
            reason += "; its whole interval is below the margin: the direction holds, the size not"
    elif high < 0:
        result, reason = "not reproduced", "the opposite: the whole interval is below 0"
    elif high < margin:
        result, reason = "not reproduced", "the whole interval is below the margin"
    else:
        # To decide, the half-width must shrink below the larger of |mean| (to exclude 0) and
        # margin - mean (to exclude the margin); margin > 0 makes that gap positive even at mean 0.
        gap = max(abs(mean), margin - mean)
        result = "inconclusive"
        reason = ("the interval covers 0 and reaches the margin; seeds_needed (at the observed "
                  f"mean and sd {sd:.4g}) would exclude "
                  + ("0: reproduced" if mean >= margin - mean else "the margin: not reproduced"))
        needed = _seeds_needed(sd, gap, alpha, n)
    if n > 1 and np.allclose(a - b, a[0] - b[0], rtol=0, atol=1e-12):  # float noise aside
        reason += " (every seed gave the same difference: the interval is that single point)"
    return {"verdict": result, "reason": reason, "n_seeds": n, "claimed_gain": claimed_gain,
            "margin": margin, "margin_fraction": margin_fraction,
            "mean_diff": diff["mean_diff"], "ci": diff["ci_t"] or diff["ci"], "ci_bootstrap": diff["ci"],
            "iqm_diff": diff["iqm_diff"], "iqm_diff_ci": diff["iqm_diff_ci"],
            "iqm_a": iqm_a[0], "iqm_a_ci": list(iqm_a[1:]),
            "iqm_b": iqm_b[0], "iqm_b_ci": list(iqm_b[1:]),
            "prob_improvement": poi[0], "prob_improvement_ci": list(poi[1:]),
            "seeds_needed": needed, "alpha": alpha}
