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
