"""The utterance view of one game's rollouts, shared by cluster, select-k, label and build.

Every turn (all speakers, in order, invalid ones included) is an utterance u_1..u_n. Most are
clustered by their text; Twenty Questions answers instead get one of three fixed classes. Each
clustered utterance is cut at the k of a *label role*: the speaker for policy turns, the agent
for oracle answers (Guess My City). Labels live in padded (episodes, max_len) int matrices so
keys for every k are computed with array operations.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from src.intention.aggregation import (PAD, AggregationConfig, aggregate, discounted_rewards, group_index,
                             history_key_ids)
from src.io_utils import InputError, read_jsonl
from src.rollout.format import validate_rollout

ANSWER_CLASSES = ("yes", "no", "unknown")  # label codes -1, -2, -3
FIXED_ANSWER_GAMES = frozenset({"twenty_questions"})
ROLE_ORDER = ("alice", "bob", "agent")
NO_ROLE = -1


def answer_code(answer: str) -> int:
    return -1 - ANSWER_CLASSES.index(answer)


def label_name(code: int) -> int | str:
    """A label as written to files: a cluster id, or the answer class name."""
    return int(code) if code >= 0 else ANSWER_CLASSES[-1 - int(code)]


def label_code(name: int | str) -> int:
    """Inverse of :func:`label_name`; ValueError for anything else."""
    if isinstance(name, str):
        return answer_code(name)
    if isinstance(name, int) and not isinstance(name, bool) and name >= 0:
        return name
    raise ValueError(f"not a label: {name!r}")


def read_game_rollouts(path: Path | str, game: str) -> list[dict]:
    """Validated rollouts of ``game``: the checks of docs/method.md §5 plus what aggregation
    relies on."""
    seen: dict[str, str] = {}
    fixed_answers = game in FIXED_ANSWER_GAMES

    def validate(row: dict, where: str) -> None:
        validate_rollout(row, where)
        if row["game"] != game:
            raise InputError(f"{where}: field 'game' is '{row['game']}', expected '{game}'")
        if row["episode_id"] in seen:
            raise InputError(f"{where}: field 'episode_id' '{row['episode_id']}' repeats "
                             f"{seen[row['episode_id']]}")
        seen[row["episode_id"]] = where
        for i, turn in enumerate(row["turns"]):
            if turn["speaker"] == "env" and fixed_answers:
                move = turn.get("move")
                answer = move.get("answer") if isinstance(move, dict) else None
                if answer not in ANSWER_CLASSES:
                    raise InputError(f"{where}: turns[{i}].move.answer is {answer!r}, "
                                     f"expected one of {list(ANSWER_CLASSES)}")

    return read_jsonl(path, validate)


@dataclass
class GameUtterances:
    game: str
    episodes: list[dict]
    roles: tuple[str, ...]  # the players, in ROLE_ORDER
    texts: list[str]  # unique clustered texts, in order of first appearance
    text_index: np.ndarray  # (episodes, max_len): index into texts, an answer code, or PAD
    label_role: np.ndarray  # (episodes, max_len): index into roles whose k cuts it, or NO_ROLE
    lengths: np.ndarray  # utterances per episode

    @classmethod
    def from_episodes(cls, game: str, episodes: list[dict]) -> GameUtterances:
        speakers = {t["speaker"] for e in episodes for t in e["turns"]}
        roles = tuple(r for r in ROLE_ORDER if r in speakers)
        if "env" in speakers and "agent" not in roles:
            raise InputError(f"{game}: env turns without an agent: cannot choose their k")
        lengths = np.array([len(e["turns"]) for e in episodes], dtype=np.int64)
        shape = (len(episodes), int(lengths.max(initial=0)))
        text_index = np.full(shape, PAD, dtype=np.int64)
        label_role = np.full(shape, NO_ROLE, dtype=np.int64)
        index_of: dict[str, int] = {}
        fixed_answers = game in FIXED_ANSWER_GAMES
        for e, episode in enumerate(episodes):
            for i, turn in enumerate(episode["turns"]):
                if turn["speaker"] == "env" and fixed_answers:
                    text_index[e, i] = answer_code(turn["move"]["answer"])
                    continue
                text_index[e, i] = index_of.setdefault(turn["text"], len(index_of))
                label_role[e, i] = roles.index("agent" if turn["speaker"] == "env" else turn["speaker"])
        return cls(game, episodes, roles, list(index_of), text_index, label_role, lengths)

    def labels(self, text_labels_by_role: list[np.ndarray]) -> np.ndarray:
        """Label matrix: each clustered utterance labelled by its label role's cut."""
        out = np.where(self.text_index < 0, self.text_index, 0)
        for r, text_labels in enumerate(text_labels_by_role):
            here = self.label_role == r
            out[here] = text_labels[self.text_index[here]]
        return out

    def labels_at_one_cut(self, text_labels: np.ndarray) -> np.ndarray:
        """All utterances cut at the same k (how SplitScore compares k with k+1)."""
        return self.labels([text_labels] * len(self.roles))


@dataclass
class ActionInstances:
    """Every policy action of the game, in rollout order, with its raw reward
    (docs/method.md §8)."""

    episode: np.ndarray  # index into GameUtterances.episodes
    position: np.ndarray  # index i in the episode's turns
    player: np.ndarray  # index into GameUtterances.roles
    turn: np.ndarray  # t = 1..T_p
    raw_reward: np.ndarray  # gamma^(T_p - t) * R_p
    episode_reward: np.ndarray  # R_p

    @classmethod
    def from_utterances(cls, utt: GameUtterances, gamma: float) -> ActionInstances:
        rows = []
        for e, episode in enumerate(utt.episodes):
            for p, role in enumerate(utt.roles):
                positions = [i for i, t in enumerate(episode["turns"]) if t["speaker"] == role]
                if not positions:
                    continue
                reward = float(episode["rewards"][role])
                raw = discounted_rewards(reward, len(positions), gamma)
                rows += [(e, i, p, t, r, reward) for t, (i, r) in enumerate(zip(positions, raw), 1)]
        rows.sort(key=lambda row: row[:2])  # rollout order: episode, then position
        columns = list(zip(*rows)) or [()] * 6
        ints = [np.array(c, dtype=np.int64) for c in columns[:4]]
        floats = [np.array(c, dtype=np.float64) for c in columns[4:]]
        return cls(*ints, *floats)

    def __len__(self) -> int:
        return len(self.episode)

    def keys(self, labels: np.ndarray, window: int) -> np.ndarray:
        """Group id of each instance: (player, labels of the history and of the action)."""
        history = history_key_ids(labels, window)
        return group_index(self.player, history[self.episode, self.position])

    def aggregated(self, labels: np.ndarray, cfg: AggregationConfig) -> tuple[np.ndarray, np.ndarray]:
        """(aggregated reward, group id) of every instance under the given labels."""
        group = self.keys(labels, cfg.history_window)
        return aggregate(self.raw_reward, group, cfg.aggregation), group

    def aggregated_at_every_k(self, utt: GameUtterances, text_labels_per_k: np.ndarray,
                              cfg: AggregationConfig) -> Iterator[np.ndarray]:
        """Aggregated rewards with *all* utterances cut at each k in turn (docs/method.md §7)."""
        for text_labels in text_labels_per_k:
            yield self.aggregated(utt.labels_at_one_cut(text_labels), cfg)[0]

    def of_role(self, role_index: int) -> np.ndarray:
        return self.player == role_index

