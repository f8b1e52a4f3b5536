"""ARIA reward aggregation (docs/method.md §8) as small pure functions over arrays.

The shape follows verl's advantage estimators: an aggregator is registered by name and maps
per-instance rewards plus a group index (any key, factorised to ints) to per-instance outputs.
Keys are built from cluster-label sequences by :func:`history_key_ids`, so select-k (which
scores every k) and build (which writes the records) compute exactly the same rewards.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np

Aggregator = Callable[[np.ndarray, np.ndarray], np.ndarray]
AGGREGATORS: dict[str, Aggregator] = {}

# Label matrices pad positions past an episode's end (and before its start, for windows)
# with a code no real label uses: cluster ids are >= 0, fixed answer classes are -1..-3.
PAD = -100


def register_aggregator(name: str) -> Callable[[Aggregator], Aggregator]:
    def decorate(fn: Aggregator) -> Aggregator:
        if name in AGGREGATORS:
            raise ValueError(f"aggregator '{name}' registered twice")
        AGGREGATORS[name] = fn
        return fn
    return decorate


def get_aggregator(name: str) -> Aggregator:
    if name not in AGGREGATORS:
        raise KeyError(f"unknown aggregator '{name}'; known: {sorted(AGGREGATORS)}")
    return AGGREGATORS[name]


@register_aggregator("mean")
def group_mean(rewards: np.ndarray, group: np.ndarray) -> np.ndarray:
    """ARIA: every instance gets the mean reward of its key (a conditional mean)."""
    sums = np.bincount(group, weights=rewards)
    counts = np.bincount(group)
    return (sums / counts)[group]


@register_aggregator("none")
def no_aggregation(rewards: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The paper's ablation: REINFORCE on raw discounted rewards."""
    return np.asarray(rewards, dtype=np.float64).copy()


@dataclass
class AggregationConfig:
    """Params section ``build``: read by select-k too, so it scores k with build's rewards."""

    gamma: float  # raw reward of the t-th of T actions: gamma^(T - t) * R
    history_window: int  # 0: key is the full history (paper); w > 0: last w utterances only
    aggregation: str  # a registered aggregator: mean (ARIA) | none (raw rewards)
    grouping: list[str]  # registered grouping rules build runs (src/intention/grouping.py)
    similarity_threshold: float  # rule similarity: utterances merged at this ratio or above

    def validate(self) -> str | None:
        from src.intention.grouping import GROUPINGS  # the rules import this module

        if not 0 < self.gamma <= 1:
            return "gamma must be in (0, 1]"
        if self.history_window < 0:
            return "history_window must be >= 0 (0 = full history)"
        if self.aggregation not in AGGREGATORS:
            return f"aggregation must be one of {sorted(AGGREGATORS)}"
        unknown = [name for name in self.grouping if name not in GROUPINGS]
        if unknown:
            return f"grouping: unknown rule '{unknown[0]}'; known: {sorted(GROUPINGS)}"
        if len(set(self.grouping)) != len(self.grouping):
            return "grouping lists a rule twice"
        if not 0 < self.similarity_threshold <= 1:
            return "similarity_threshold must be in (0, 1]"
        return None


def discounted_rewards(episode_reward: float, n_actions: int, gamma: float) -> np.ndarray:
    """Raw rewards of a player's actions t = 1..T: gamma^(T - t) * R (last one undiscounted)."""
    return episode_reward * gamma ** np.arange(n_actions - 1, -1, -1, dtype=np.float64)


def group_index(*columns: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Factorise parallel key columns into ints 0..G-1, numbered by first appearance."""
    arrays = [np.asarray(c) for c in columns]
    if all(a.dtype.kind in "iu" for a in arrays):
        _, first, inverse = np.unique(np.stack(arrays, axis=1), axis=0, return_index=True,
                                      return_inverse=True)
        return first_appearance_rank(first)[inverse.ravel()]
    seen: dict = {}
    return np.fromiter((seen.setdefault(key, len(seen)) for key in zip(*columns)),
                       dtype=np.int64, count=len(arrays[0]))


def first_appearance_rank(first_index: np.ndarray) -> np.ndarray:
    """Map ``np.unique`` groups to ids ordered by where each group first appears."""
    rank = np.empty(len(first_index), dtype=np.int64)
    rank[np.argsort(first_index, kind="stable")] = np.arange(len(first_index))
    return rank


def history_key_ids(labels: np.ndarray, window: int = 0) -> np.ndarray:
    """Id of (c(u_1), ..., c(u_i)) for every position i of every episode.

    ``labels`` is (episodes, max_len), padded with PAD. Equal ids mean equal label sequences
    (the full prefix, or with ``window`` > 0 only the last ``window`` labels). Ids at padded
    positions are meaningless.
    """
    n_episodes, max_len = labels.shape
    labels = labels.astype(np.int64)
    if window > 0:
        padded = np.concatenate([np.full((n_episodes, window - 1), PAD, np.int64), labels], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
        _, inverse = np.unique(windows.reshape(-1, window), axis=0, return_inverse=True)
        return inverse.reshape(n_episodes, max_len)
    # Full prefix: id at depth t = id of the pair (id at depth t-1, label t), one unique per depth.
    ids = np.empty((n_episodes, max_len), dtype=np.int64)
    previous = np.zeros(n_episodes, dtype=np.int64)
    span = int(labels.max()) - PAD + 1
    offset = 0
    for t in range(max_len):
        pair = previous * span + (labels[:, t] - PAD)
        uniq, inverse = np.unique(pair, return_inverse=True)
        previous = ids[:, t] = offset + inverse
        offset += len(uniq)
    return ids


def aggregate(rewards: np.ndarray, group: np.ndarray, name: str = "mean") -> np.ndarray:
    return get_aggregator(name)(np.asarray(rewards, dtype=np.float64), np.asarray(group))


def variance(values: np.ndarray) -> float:
    """Population variance over action instances (0 for fewer than two)."""
    return float(np.var(values)) if len(values) > 1 else 0.0
