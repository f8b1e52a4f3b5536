"""Choosing k (docs/method.md §7): SplitScore per role, silhouette as a diagnostic, or a pinned k.

SplitScore asks how much the aggregated rewards of a role's actions still move when the tree
is cut one cluster finer: Delta_k = mean_i |R~_{k+1}(i) - R~_k(i)|. The chosen k* is the
smallest k whose next tau + 1 deltas (k..k+tau) all stay below epsilon. The result is a data
file (metrics/select_k/<game>.json) that the label stage depends on; params are never edited.
The same sweep over the cuts gives, per role, the variance of the aggregated rewards at
every k against the raw rewards' (plots only: what aggregation removes as k grows).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.intention.aggregation import AggregationConfig, variance
from src.intention.clustering import load_clustering
from src.curves import plot_curves, write_curve_csvs
from src.io_utils import InputError
from src.intention.utterances import ActionInstances, GameUtterances, read_game_rollouts

METHODS = ("split_score", "silhouette", "fixed")


@dataclass
class SelectKConfig:
    method: str  # split_score (the paper) | silhouette | fixed
    epsilon: float  # SplitScore threshold on the mean change of aggregated rewards
    tau: int  # SplitScore: the deltas at k..k+tau must all be below epsilon
    fixed_k: int  # method fixed: this k for every role (the original release used 36)
    silhouette_sample: int  # unique utterances sampled for the silhouette diagnostic
    seed: int  # silhouette sample seed

    def validate(self) -> str | None:
        if self.method not in METHODS:
            return f"method must be one of {list(METHODS)}"
        if self.epsilon <= 0 or self.tau < 0:
            return "need epsilon > 0 and tau >= 0"
        if self.fixed_k < 2:
            return "fixed_k must be >= 2"
        if self.silhouette_sample < 3:
            return "silhouette_sample must be >= 3"
        return None


def k_sweep(utt: GameUtterances, instances: ActionInstances, text_labels_per_k: np.ndarray,
            cfg: AggregationConfig) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Per role, Delta_k for k = k_min .. k_max - 1 and the variance of the aggregated rewards
    at every k: one pass over the cuts, so each cut is aggregated once."""
    masks = {role: instances.of_role(p) for p, role in enumerate(utt.roles)}
    steps = {role: [] for role in utt.roles}
    variances = {role: [] for role in utt.roles}
    previous = None
    for rewards in instances.aggregated_at_every_k(utt, text_labels_per_k, cfg):
        step = None if previous is None else np.abs(rewards - previous)
        for role, mine in masks.items():
            variances[role].append(variance(rewards[mine]))
            if step is not None:
                steps[role].append(step[mine].mean() if mine.any() else 0.0)
        previous = rewards
    return {role: np.array(d) for role, d in steps.items()}, variances


def choose_split_k(k_values: np.ndarray, deltas: np.ndarray, epsilon: float,
                   tau: int) -> tuple[int, bool]:
    """(k*, qualified): smallest k with deltas k..k+tau all < epsilon, else (k_max, False)."""
    below = deltas < epsilon
    for j in range(len(deltas) - tau):
        if below[j:j + tau + 1].all():
            return int(k_values[j]), True
    return int(k_values[-1]), False


def silhouette_curve(embeddings: np.ndarray, text_labels_per_k: np.ndarray, sample: int,
                     seed: int) -> list[float | None]:
    """Cosine silhouette of every cut on one fixed-seed sample (None where undefined)."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), min(sample, len(embeddings)), replace=False))
    x = embeddings[rows].astype(np.float64)
    distances = np.clip(1 - x @ x.T, 0, None)
    np.fill_diagonal(distances, 0)
    scores = []
    for text_labels in text_labels_per_k:
        labels = text_labels[rows]
        defined = 2 <= len(np.unique(labels)) <= len(rows) - 1
        scores.append(float(silhouette_score(distances, labels, metric="precomputed"))
                      if defined else None)
    return scores


def select_k(cfg: SelectKConfig, agg: AggregationConfig, game: str, rollouts: Path,
             cluster_dir: Path, plot_dir: Path, png: Path) -> dict:
    """The select-k stage: writes the curves and returns the metrics (chosen k per role)."""
    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    instances = ActionInstances.from_utterances(utt, agg.gamma)
    saved = load_clustering(cluster_dir, utt)
    k_values, per_k = saved.cuts.k_values, saved.cuts.labels
    deltas, variances = k_sweep(utt, instances, per_k, agg)
    raw = {role: variance(instances.raw_reward[instances.of_role(p)])
           for p, role in enumerate(utt.roles)}
    split = {role: choose_split_k(k_values, d, cfg.epsilon, cfg.tau) for role, d in deltas.items()}
    silhouette = silhouette_curve(saved.embeddings, per_k, cfg.silhouette_sample, cfg.seed)
    ks = [int(k) for k in k_values]
    scored = [(k, s) for k, s in zip(ks, silhouette) if s is not None]
    # highest silhouette, the smallest k on ties
    silhouette_k, best_silhouette = (
        max(scored, key=lambda pair: (pair[1], -pair[0])) if scored else (None, None))

    notes = [f"SplitScore: no k qualifies for {role}; using k_max = {k}"
             for role, (k, ok) in split.items() if not ok]
    if cfg.method == "split_score":
        chosen = {role: k for role, (k, _) in split.items()}
    elif cfg.method == "silhouette":
        if silhouette_k is None:
            raise InputError(f"{cluster_dir}: silhouette is undefined for every k; "
                             f"use select_k.method split_score or fixed")
        chosen = dict.fromkeys(utt.roles, silhouette_k)
    else:
        k = int(np.clip(cfg.fixed_k, k_values[0], k_values[-1]))
        if k != cfg.fixed_k:
            notes.append(f"fixed_k = {cfg.fixed_k} is outside the available range "
                         f"{k_values[0]}..{k_values[-1]}; using {k}")
        chosen = dict.fromkeys(utt.roles, k)

    write_curve_csvs(plot_dir, ks, {
        role: {"split_delta": [*map(float, d), None], "silhouette": silhouette,
               "aggregated_variance": variances[role], "raw_variance": [raw[role]] * len(ks)}
        for role, d in deltas.items()})
    plot_curves(png, f"{game}: choosing k ({cfg.method}: "
                     + ", ".join(f"{role} {k}" for role, k in chosen.items()) + ")", [
        {"ylabel": "SplitScore delta_k", "log": True,
         "curves": {role: (ks[:-1], d) for role, d in deltas.items()},
         "chosen": {role: k for role, (k, _) in split.items()},
         "levels": {"epsilon": (cfg.epsilon, f"epsilon = {cfg.epsilon}")}},
        {"ylabel": f"silhouette (cosine, sample <= {cfg.silhouette_sample})",
         "curves": {"silhouette": ([k for k, _ in scored], [s for _, s in scored])},
         "chosen": {"silhouette": silhouette_k} if silhouette_k else {}},
        {"ylabel": "aggregated reward variance",
         "curves": {role: (ks, v) for role, v in variances.items()},
         "chosen": chosen,
         "levels": {role: (raw[role], f"{role}: raw rewards") for role in utt.roles}},
    ])

    metrics = {
        "game": game, "method": cfg.method, "k": chosen,
        "k_min": ks[0], "k_max": ks[-1], "epsilon": cfg.epsilon, "tau": cfg.tau,
        "split_score": {role: {"k": k, "qualified": ok} for role, (k, ok) in split.items()},
        "silhouette": {"k": silhouette_k, "best": best_silhouette},
    }
    if notes:
        metrics["note"] = "; ".join(notes)
    return metrics
