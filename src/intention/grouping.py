"""Grouping rules (docs/method.md §8.1): which action instances share an aggregation key.

The shape follows the aggregator registry (src/intention/aggregation.py) and verl's advantage
estimators: a rule is a small pure function registered by name. It maps a game's action
instances, with what it may look at (the utterances of each history and action, the cluster
labels at the chosen k, the recorded intentions), to one group id per instance. The player is
always part of the key, so every group holds one role's instances only. The build stage runs
every rule of ``build.grouping`` on the same instances and aggregates each rule's groups with
the same aggregator (``build.aggregation``), so the rules differ in their keys and nothing else.

Rules that key by utterance labels (``intention``, ``exact``, ``similarity``,
``true_intention``) build a label matrix aligned with the utterances and key it exactly as the
clusters are keyed (:meth:`ActionInstances.keys`: the labels of the history, then the action's,
cut to ``build.history_window``).
"""
from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable

import numpy as np

from src.intention.aggregation import PAD
from src.intention.utterances import ActionInstances, GameUtterances


@dataclass(frozen=True)
class GroupingInput:
    """Everything a rule may read: one game's utterances and action instances."""

    utt: GameUtterances
    instances: ActionInstances
    labels: np.ndarray  # cluster labels at the chosen k, aligned with utt (the label stage)
    window: int = 0  # build.history_window: 0 = the whole history
    similarity_threshold: float = 0.95  # build.similarity_threshold
    true_labels: np.ndarray | None = None  # recorded intentions (true_intention_labels), or None


GroupingRule = Callable[[GroupingInput], "np.ndarray | None"]
GROUPINGS: dict[str, GroupingRule] = {}
REWARD_FIELDS: dict[str, str] = {}  # rule -> the record field holding its aggregated reward


def register_grouping(name: str,
                      field: str | None = None) -> Callable[[GroupingRule], GroupingRule]:
    """Register a rule; its reward goes into the record field ``field`` (``reward_<name>``)."""
    def decorate(fn: GroupingRule) -> GroupingRule:
        if name in GROUPINGS:
            raise ValueError(f"grouping rule '{name}' registered twice")
        GROUPINGS[name] = fn
        REWARD_FIELDS[name] = field or f"reward_{name}"
        return fn
    return decorate


def get_grouping(name: str) -> GroupingRule:
    if name not in GROUPINGS:
        raise KeyError(f"unknown grouping rule '{name}'; known: {sorted(GROUPINGS)}")
    return GROUPINGS[name]


def group_keys(name: str, inp: GroupingInput) -> np.ndarray | None:
    """Group id of every action instance under rule ``name``; None when the rule cannot run on
    these rollouts (``true_intention`` without recorded intentions)."""
    return get_grouping(name)(inp)


@register_grouping("intention", field="reward")
def by_intention(inp: GroupingInput) -> np.ndarray:
    """ARIA: the cluster labels of the history and the action at the chosen k."""
    return inp.instances.keys(inp.labels, inp.window)


@register_grouping("exact")
def by_exact_text(inp: GroupingInput) -> np.ndarray:
    """GiGPO-style: identical history text and identical action text (speaker and text of
    every utterance)."""
    codes, _ = text_codes(inp.utt)
    return inp.instances.keys(codes, inp.window)


@register_grouping("similarity")
def by_similar_text(inp: GroupingInput) -> np.ndarray:
    """Utterances of one speaker merged when their string-similarity ratio
    (difflib.SequenceMatcher) reaches ``similarity_threshold``, transitively (connected
    components), then keyed like clusters. Threshold 1.0 is ``exact``."""
    codes, texts = text_codes(inp.utt)
    merged = similar_text_components(texts, inp.similarity_threshold)
    return inp.instances.keys(np.where(codes == PAD, PAD, merged[np.maximum(codes, 0)]), inp.window)


@register_grouping("true_intention", field="reward_true")
def by_true_intention(inp: GroupingInput) -> np.ndarray | None:
    """The moves' recorded true intentions (what perfect clustering would give)."""
    if inp.true_labels is None:
        return None
    return inp.instances.keys(inp.true_labels, inp.window)


@register_grouping("none", field="raw_reward")
def no_grouping(inp: GroupingInput) -> np.ndarray:
    """Every instance its own group: aggregation leaves the raw rewards."""
    return np.arange(len(inp.instances), dtype=np.int64)


def text_codes(utt: GameUtterances) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(label matrix of (speaker, text) ids aligned with ``utt``, padded with PAD; the unique
    (speaker, text) pairs in order of first appearance)."""
    codes = np.full(utt.text_index.shape, PAD, dtype=np.int64)
    ids: dict[tuple[str, str], int] = {}
    for e, episode in enumerate(utt.episodes):
        for i, turn in enumerate(episode["turns"]):
            codes[e, i] = ids.setdefault((turn["speaker"], turn["text"]), len(ids))
    return codes, list(ids)


def similar_text_components(texts: list[tuple[str, str]], threshold: float) -> np.ndarray:
    """Component id of each (speaker, text): texts of one speaker are linked when
    SequenceMatcher's ratio is >= ``threshold``; ids numbered by first appearance. Texts are
    compared in length order, stopping where the length bound 2·min/(sum) of the ratio falls
    below the threshold."""
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_speaker: dict[str, list[int]] = {}
    for i, (speaker, _) in enumerate(texts):
        by_speaker.setdefault(speaker, []).append(i)
    matcher = SequenceMatcher(None, autojunk=False)
    for members in by_speaker.values():
        members = sorted(members, key=lambda i: len(texts[i][1]))
        for a, i in enumerate(members):
            short = texts[i][1]
            matcher.set_seq2(short)
            for j in members[a + 1:]:
                long = texts[j][1]
                total = len(short) + len(long)
                if total and 2 * len(short) / total < threshold:
                    break  # longer texts only lower the bound
                if root(i) == root(j):
                    continue
                matcher.set_seq1(long)
                if short == long or (matcher.quick_ratio() >= threshold
                                     and matcher.ratio() >= threshold):
                    parent[root(j)] = root(i)
    roots = [root(i) for i in range(len(texts))]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)


def rule_metrics(group: np.ndarray, instances: ActionInstances, roles: tuple[str, ...]) -> dict:
    """Per role: the number of keys and the share of action instances alone in their group
    (where the rule degenerates to raw rewards)."""
    out = {}
    for p, role in enumerate(roles):
        mine = group[instances.of_role(p)]
        if not len(mine):
            continue
        _, inverse, counts = np.unique(mine, return_inverse=True, return_counts=True)
        out[role] = {"keys": int(len(counts)),
                     "singleton_share": round(float(np.mean(counts[inverse.ravel()] == 1)), 4)}
    return out
