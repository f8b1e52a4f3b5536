"""Scale check of intention clustering (docs/method.md §6): the two-level path on many utterances.

1. N synthetic 384-d unit vectors (default 1,000,000) -> labels for every k in 2..100 through
   the two-level path; wall time and peak memory (limits: 10 min, 6 GiB on 2 CPU cores).
2. On 20,000 points: adjusted Rand index of the two-level labels against exact Ward for every
   k, and their mean (must be >= 0.8); the exact path's time and peak memory.

The vectors come from a two-level Gaussian mixture (10 topics x 10 phrasings), so that every
k in 2..100 has a meaningful answer, as with paraphrased utterances. Each measurement runs in
its own process so its peak resident memory (ru_maxrss) is its own, data included.

    python bench/cluster_scale.py            # full run (several minutes)
    python bench/cluster_scale.py --n 50000  # quick check
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.intention.clustering import exact_cuts, two_level_cuts  # noqa: E402

DIM = 384
K_VALUES = np.arange(2, 101)
LIMITS = {"seconds": 600, "peak_gib": 6.0, "mean_ari": 0.8}


def mixture(n: int, seed: int, topics: int = 10, phrasings: int = 10,
            spread: float = 0.6, noise: float = 1.5) -> np.ndarray:
    """Unit vectors around topics x phrasings centres, generated in chunks (float32).

    A phrasing centre is its topic's centre plus ``spread`` times a Gaussian vector; a point
    is its centre (unit norm) plus a Gaussian vector of norm about ``noise``, renormalised.
    With these defaults neighbouring phrasings overlap: exact Ward recovers the 100 mixture
    components at k = 100 with an adjusted Rand index of about 0.96, not 1.
    """
    rng = np.random.default_rng(seed)
    topic_centres = rng.standard_normal((topics, DIM))
    centres = (np.repeat(topic_centres, phrasings, axis=0)
               + spread * rng.standard_normal((topics * phrasings, DIM)))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        chunk = centres[rng.integers(0, len(centres), stop - start)].astype(np.float32)
        chunk += rng.standard_normal(chunk.shape, dtype=np.float32) * np.float32(noise / np.sqrt(DIM))
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(path: str, n: int, args: argparse.Namespace, queue) -> None:
    """Child process: generate n points, cluster them, report time, memory, labels."""
    x = mixture(n, args.seed)
    start = time.perf_counter()
    if path == "exact":
        cuts = exact_cuts(x, K_VALUES, args.linkage)
    else:
        cuts = two_level_cuts(x, K_VALUES, args.linkage, args.micro_clusters, args.seed)
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "peak_gib": peak_gib(),
               "labels": cuts.labels if n <= args.compare_n else None,
               "shape": cuts.labels.shape})


def in_child(path: str, n: int, args: argparse.Namespace) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=measure, args=(path, n, args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="points for the scale run")
    parser.add_argument("--compare-n", type=int, default=20_000, help="points for the ARI check")
    parser.add_argument("--micro-clusters", type=int, default=2000)
    parser.add_argument("--linkage", default="ward", choices=["ward", "average"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    big = in_child("two-level", args.n, args)
    print(f"two-level, n={args.n:,}: {big['seconds']:.1f} s, peak {big['peak_gib']:.2f} GiB "
          f"(labels {big['shape'][0]} k x {big['shape'][1]:,} points)", flush=True)
    exact = in_child("exact", args.compare_n, args)
    print(f"exact {args.linkage}, n={args.compare_n:,}: {exact['seconds']:.1f} s, "
          f"peak {exact['peak_gib']:.2f} GiB", flush=True)
    small = in_child("two-level", args.compare_n, args)
    print(f"two-level, n={args.compare_n:,}: {small['seconds']:.1f} s, "
          f"peak {small['peak_gib']:.2f} GiB", flush=True)
    ari = [adjusted_rand_score(a, b) for a, b in zip(exact["labels"], small["labels"])]
    print("ARI two-level vs exact per k: " + " ".join(f"{k}:{v:.3f}" for k, v in zip(K_VALUES, ari)))
    mean_ari = float(np.mean(ari))
    print(f"mean ARI over k=2..100: {mean_ari:.4f} (min {min(ari):.3f} at k={K_VALUES[int(np.argmin(ari))]})")
    checks = {"seconds": big["seconds"] <= LIMITS["seconds"],
              "peak_gib": big["peak_gib"] <= LIMITS["peak_gib"],
              "mean_ari": mean_ari >= LIMITS["mean_ari"]}
    print("limits: " + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in checks.items()))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
