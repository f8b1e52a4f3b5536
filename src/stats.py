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
