"""Intention labels (the label stage): every utterance's cluster id at its role's chosen k.

Alice's utterances are cut at alice's k, Bob's at bob's, the agent's and Guess My City's
oracle answers at the agent's; Twenty Questions answers keep their fixed class (yes / no /
unknown). One file per game, one entry per episode aligned with its turns, so build can
check it against the rollouts it was made from.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.intention.aggregation import PAD
from src.intention.clustering import labels_at_chosen_k, load_clustering
from src.io_utils import InputError, read_json, write_text
from src.intention.utterances import GameUtterances, label_code, label_name, read_game_rollouts


def label_game(game: str, rollouts: Path, cluster_dir: Path, chosen_k_file: Path) -> dict:
    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    saved = load_clustering(cluster_dir, utt)
    chosen = read_json(chosen_k_file).get("k")
    k_values = saved.cuts.k_values
    for role in utt.roles:
        k = (chosen or {}).get(role)
        if not isinstance(k, int) or not k_values[0] <= k <= k_values[-1]:
            raise InputError(f"{chosen_k_file}: field 'k.{role}' should be an int in "
                             f"{k_values[0]}..{k_values[-1]}, got {k!r}")
    labels = labels_at_chosen_k(utt, saved.cuts, chosen)
    return {
        "game": game,
        "k": {role: chosen[role] for role in utt.roles},
        "embedder": saved.meta["embedder"], "linkage": saved.meta["linkage"],
        "method": saved.meta["method"],
        "episodes": [{"episode_id": e["episode_id"],
                      "labels": [label_name(c) for c in labels[i, :utt.lengths[i]]]}
                     for i, e in enumerate(utt.episodes)],
    }


def write_labels(path: Path, doc: dict) -> None:
    """Compact JSON: one number per utterance would make a pretty-printed file very long."""
    write_text(path, json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n")


def read_labels(path: Path, utt: GameUtterances) -> tuple[np.ndarray, dict[str, int]]:
    """(label matrix aligned with ``utt``, chosen k per role); stale or bad files fail."""
    doc = read_json(path)
    episodes = doc.get("episodes") if isinstance(doc, dict) else None
    if not isinstance(episodes, list) or len(episodes) != len(utt.episodes):
        raise InputError(f"{path}: field 'episodes' should list the {len(utt.episodes)} episodes "
                         f"of the rollouts (stale labels? rerun the label stage)")
    labels = np.full(utt.text_index.shape, PAD, dtype=np.int64)
    for i, (entry, episode) in enumerate(zip(episodes, utt.episodes)):
        where = f"{path}: episodes[{i}]"
        if not isinstance(entry, dict) or entry.get("episode_id") != episode["episode_id"]:
            raise InputError(f"{where}: field 'episode_id' should be '{episode['episode_id']}' "
                             f"(stale labels? rerun the label stage)")
        row = entry.get("labels")
        if not isinstance(row, list) or len(row) != utt.lengths[i]:
            raise InputError(f"{where}: field 'labels' should have {utt.lengths[i]} entries")
        try:
            labels[i, :len(row)] = [label_code(name) for name in row]
        except (ValueError, TypeError):
            raise InputError(f"{where}: field 'labels' holds something other than cluster ids "
                             f"and answer classes") from None
    return labels, doc.get("k", {})
