"""Training records (SPEC 8/9): one per action instance, with aggregated and raw rewards.

Every action instance takes part in the aggregation; instances that cannot train a policy
(no action text, no prompt) are then left out of the records and counted by reason. Metrics
compare the variance of raw and aggregated rewards per player, and a curve shows that
variance for every k (all utterances cut at the same k, as in SplitScore).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.intention.aggregation import AggregationConfig, variance
from src.intention.clustering import load_clustering
from src.curves import plot_curves, write_curve_csvs
from src.io_utils import write_jsonl
from src.intention.labels import read_labels
from src.limits import CHAR_REASONS, Limits, turn_problem
from src.intention.utterances import ActionInstances, GameUtterances, read_game_rollouts

LEFT_OUT_REASONS = {
    "empty_action": lambda turn: not turn["text"].strip(),
    "no_messages": lambda turn: not turn["messages"],
}


def build_records(cfg: AggregationConfig, game: str, rollouts: Path, labels_path: Path,
                  cluster_dir: Path, records_path: Path, plot_dir: Path, png: Path,
                  limits: Limits | None = None) -> dict:
    """The build stage: writes records and the variance-vs-k curves; returns the metrics.
    With ``limits``, records over the character limits are left out too (src.limits)."""
    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    instances = ActionInstances.from_utterances(utt, cfg.gamma)
    labels, chosen_k = read_labels(labels_path, utt)
    rewards, group = instances.aggregated(labels, cfg)
    key_size = np.bincount(group)[group]

    reasons = [*LEFT_OUT_REASONS, *(CHAR_REASONS if limits is not None else ())]
    left_out = {role: dict.fromkeys(reasons, 0) for role in utt.roles}
    records = []
    for n in range(len(instances)):
        episode = utt.episodes[instances.episode[n]]
        position = int(instances.position[n])
        turn = episode["turns"][position]
        player = utt.roles[instances.player[n]]
        reason = next((r for r, applies in LEFT_OUT_REASONS.items() if applies(turn)), None)
        if reason is None and limits is not None:
            reason = turn_problem(turn["text"], turn["messages"], limits)
        if reason:
            left_out[player][reason] += 1
            continue
        records.append({
            "episode_id": episode["episode_id"], "game": game, "player": player,
            "turn": int(instances.turn[n]), "position": position,
            "messages": turn["messages"], "action": turn["text"], "valid": turn["valid"],
            "truncated": bool(turn.get("truncated", False)), "action_ids": turn.get("action_ids"),
            "reward": float(rewards[n]), "raw_reward": float(instances.raw_reward[n]),
            "episode_reward": float(instances.episode_reward[n]),
            "won": bool(instances.episode_reward[n] == 1.0), "key_size": int(key_size[n]),
        })
    write_jsonl(records_path, records)

    players = {}
    for p, role in enumerate(utt.roles):
        mine = instances.of_role(p)
        raw_var, agg_var = variance(instances.raw_reward[mine]), variance(rewards[mine])
        n_keys = len(np.unique(group[mine]))
        players[role] = {
            "k": chosen_k.get(role),
            "action_instances": int(mine.sum()),
            "raw_variance": round(raw_var, 6), "aggregated_variance": round(agg_var, 6),
            "variance_ratio": round(agg_var / raw_var, 6) if raw_var > 0 else None,
            "keys": n_keys, "mean_instances_per_key": round(mine.sum() / max(n_keys, 1), 4),
            "records_written": sum(r["player"] == role for r in records),
            "records_left_out": left_out[role],
        }
    write_variance_curves(utt, instances, load_clustering(cluster_dir, utt).cuts, chosen_k, cfg,
                          plot_dir, png)
    return {"game": game, "gamma": cfg.gamma, "history_window": cfg.history_window,
            "aggregation": cfg.aggregation, "records": len(records), "players": players}


def write_variance_curves(utt: GameUtterances, instances: ActionInstances, cuts, chosen_k: dict,
                          cfg: AggregationConfig, plot_dir: Path, png: Path) -> None:
    masks = {role: instances.of_role(p) for p, role in enumerate(utt.roles)}
    per_k = {role: [] for role in utt.roles}
    for rewards in instances.aggregated_at_every_k(utt, cuts.labels, cfg):
        for role, mine in masks.items():
            per_k[role].append(variance(rewards[mine]))
    raw = {role: variance(instances.raw_reward[mine]) for role, mine in masks.items()}
    ks = [int(k) for k in cuts.k_values]
    write_curve_csvs(plot_dir, ks, {
        role: {"aggregated_variance": per_k[role], "raw_variance": [raw[role]] * len(ks)}
        for role in utt.roles})
    plot_curves(png, f"{utt.game}: variance of aggregated rewards against k", [
        {"ylabel": "reward variance over action instances",
         "curves": {role: (ks, per_k[role]) for role in utt.roles},
         "chosen": {role: chosen_k.get(role) for role in utt.roles},
         "levels": {role: (raw[role], f"{role}: raw rewards") for role in utt.roles}}])
