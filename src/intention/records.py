"""Training records (docs/method.md §8, §9): one per action instance, with aggregated and raw
rewards, and one reward per grouping rule of ``build.grouping`` (docs/method.md §8.1).

Every action instance takes part in the aggregation; instances that cannot train a policy
(no action text, no prompt, over the character limits) are then left out of the records and
counted by reason. ``make_records`` is the one place records are made: the build stage and the
reward-model retraining of online RL both call it, so the reward model always learns from
records of the same shape and filter. Build's metrics compare the variance of raw and
aggregated rewards per player (the curve over every k belongs to select-k).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from src.intention.aggregation import AggregationConfig, aggregate, variance
from src.intention.grouping import REWARD_FIELDS, GroupingInput, group_keys, rule_metrics
from src.intention.labels import read_labels
from src.intention.utterances import ActionInstances, GameUtterances, read_game_rollouts
from src.io_utils import write_jsonl
from src.limits import CHAR_REASONS, Limits, turn_problem

LEFT_OUT_REASONS = {
    "empty_action": lambda turn: not turn["text"].strip(),
    "no_messages": lambda turn: not turn["messages"],
}


@dataclass
class GameRecords:
    """The records of one game's episodes and what the aggregation behind them looked like."""

    utt: GameUtterances
    instances: ActionInstances
    rewards: np.ndarray  # aggregated reward of every action instance
    group: np.ndarray  # aggregation key of every action instance
    labels: np.ndarray  # the label matrix the keys were made from
    records: list[dict]  # the instances that can train a policy
    left_out: dict[str, dict[str, int]]  # role -> reason -> instances left out
    kept: np.ndarray  # the action instance of each record
    by_rule: dict[str, RuleRewards | None]  # grouping rule -> its keys and rewards (or None)


RuleRewards = tuple[np.ndarray, np.ndarray]  # (group id, aggregated reward) per instance


def grouping_rewards(utt: GameUtterances, instances: ActionInstances, labels: np.ndarray,
                     cfg: AggregationConfig) -> dict[str, RuleRewards | None]:
    """Rule -> (group id, aggregated reward) of every action instance, for each rule of
    ``cfg.grouping`` on the same instances and with the same aggregator (None: the rule cannot
    run on these rollouts, as true_intention without recorded intentions)."""
    needs_truth = any(rule == "true_intention" for rule in cfg.grouping)
    inp = GroupingInput(utt, instances, labels, cfg.history_window, cfg.similarity_threshold,
                        true_intention_labels(utt) if needs_truth else None)
    out: dict[str, RuleRewards | None] = {}
    for rule in cfg.grouping:
        group = group_keys(rule, inp)
        out[rule] = None if group is None else (
            group, aggregate(instances.raw_reward, group, cfg.aggregation))
    return out


def left_out_reason(turn: dict, limits: Limits | None) -> str | None:
    """Why an action instance cannot become a record, or None."""
    reason = next((r for r, applies in LEFT_OUT_REASONS.items() if applies(turn)), None)
    if reason is None and limits is not None:
        reason = turn_problem(turn["text"], turn["messages"], limits)
    return reason


def make_records(utt: GameUtterances, labels: np.ndarray, cfg: AggregationConfig,
                 limits: Limits | None = None) -> GameRecords:
    """Aggregate every action instance of ``utt`` under ``labels`` (aligned with ``utt``) and
    turn those that can train a policy into records, with the reward of every grouping rule of
    ``cfg.grouping`` that can run (docs/method.md §8.1). With ``limits``, records over the
    character limits are left out too (src.limits)."""
    instances = ActionInstances.from_utterances(utt, cfg.gamma)
    rewards, group = instances.aggregated(labels, cfg)
    by_rule = grouping_rewards(utt, instances, labels, cfg)
    extra = {REWARD_FIELDS[rule]: result[1] for rule, result in by_rule.items()
             if result is not None and REWARD_FIELDS[rule] not in ("reward", "raw_reward")}
    key_size = np.bincount(group)[group]
    reasons = [*LEFT_OUT_REASONS, *(CHAR_REASONS if limits is not None else ())]
    left_out = {role: dict.fromkeys(reasons, 0) for role in utt.roles}
    records, kept = [], []
    for n in range(len(instances)):
        episode = utt.episodes[instances.episode[n]]
        position = int(instances.position[n])
        turn = episode["turns"][position]
        player = utt.roles[instances.player[n]]
        reason = left_out_reason(turn, limits)
        if reason:
            left_out[player][reason] += 1
            continue
        records.append({
            "episode_id": episode["episode_id"], "game": utt.game, "player": player,
            "turn": int(instances.turn[n]), "position": position,
            "messages": turn["messages"], "action": turn["text"], "valid": turn["valid"],
            "truncated": bool(turn.get("truncated", False)), "action_ids": turn.get("action_ids"),
            "reward": float(rewards[n]), "raw_reward": float(instances.raw_reward[n]),
            "episode_reward": float(instances.episode_reward[n]),
            "won": bool(instances.episode_reward[n] == 1.0), "key_size": int(key_size[n]),
            **{field: float(values[n]) for field, values in extra.items()},
        })
        kept.append(n)
    return GameRecords(utt, instances, rewards, group, labels, records, left_out,
                       np.array(kept, dtype=np.int64), by_rule)


def true_intention_labels(utt: GameUtterances) -> np.ndarray | None:
    """Labels from the moves' recorded true intentions (oracle answers: their exact text; Twenty
    Questions answers keep their fixed class), aligned with ``utt``; None when a policy turn has
    no recorded intention (SmolLM2 or imported rollouts). Diagnostics and the true_intention
    variant only: the ARIA stages never read it."""
    out = np.where(utt.text_index < 0, utt.text_index, 0)
    ids: dict[tuple[str, str], int] = {}
    for e, episode in enumerate(utt.episodes):
        for i, turn in enumerate(episode["turns"]):
            if utt.text_index[e, i] < 0:
                continue
            if turn["speaker"] == "env":
                name = "answer:" + turn["text"]
            elif "intention" in turn:
                name = turn["intention"]
            else:
                return None
            out[e, i] = ids.setdefault((turn["speaker"], name), len(ids))
    return out


def grouping_diagnostics(made: GameRecords, true: GameRecords) -> dict[str, dict]:
    """Per player: how the clusters' keys compare with the true intentions' keys (adjusted Rand
    index of the action labels, key sizes, singleton shares, within/between-key reward variance,
    the aggregation bias per true intention, and the weight on invalid or truncated moves)."""
    from sklearn.metrics import adjusted_rand_score

    out = {}
    inst = made.instances
    for p, role in enumerate(made.utt.roles):
        mine = np.flatnonzero(inst.of_role(p))
        if not len(mine):
            continue
        cluster_action = made.labels[inst.episode[mine], inst.position[mine]]
        true_action = true.labels[inst.episode[mine], inst.position[mine]]
        raw = inst.raw_reward[mine]

        def keys(group: np.ndarray) -> dict:
            sizes = np.bincount(group[mine])[group[mine]]
            within = float(np.mean((raw - aggregate(raw, group[mine])) ** 2))
            return {"keys": int(len(np.unique(group[mine]))),
                    "singleton_share": round(float(np.mean(sizes == 1)), 4),
                    "key_size_histogram": {str(k): int(v) for k, v in zip(*np.unique(
                        np.minimum(sizes, 10), return_counts=True))},  # 10 = ten or more
                    "within_key_variance": round(within, 6),
                    "between_key_variance": round(variance(raw) - within, 6)}

        turns = [made.utt.episodes[e]["turns"][i] for e, i in zip(inst.episode[mine], inst.position[mine])]
        flawed = np.array([not t["valid"] or bool(t.get("truncated")) for t in turns])
        weight = np.abs(made.rewards[mine])
        bias = {}
        for name in sorted({t.get("intention", "") for t in turns}):
            at = np.array([t.get("intention", "") == name for t in turns])
            bias[name] = round(float(np.mean(made.rewards[mine][at] - true.rewards[mine][at])), 4)
        out[role] = {
            "adjusted_rand_index": round(float(adjusted_rand_score(true_action, cluster_action)), 4),
            "clusters": keys(made.group), "true_intentions": keys(true.group),
            "aggregation_bias_by_intention": bias,
            "invalid_or_truncated_share": round(float(flawed.mean()), 4),
            "weight_share_invalid_or_truncated": round(float(weight[flawed].sum() / weight.sum()), 4)
            if weight.sum() > 0 else None,
        }
    return out


def variance_metrics(made: GameRecords, chosen_k: dict[str, int]) -> dict[str, dict]:
    """Per player: raw against aggregated reward variance, keys, and records kept or left out."""
    players = {}
    for p, role in enumerate(made.utt.roles):
        mine = made.instances.of_role(p)
        raw_var = variance(made.instances.raw_reward[mine])
        agg_var = variance(made.rewards[mine])
        n_keys = len(np.unique(made.group[mine]))
        players[role] = {
            "k": chosen_k.get(role),
            "action_instances": int(mine.sum()),
            "raw_variance": round(raw_var, 6), "aggregated_variance": round(agg_var, 6),
            "variance_ratio": round(agg_var / raw_var, 6) if raw_var > 0 else None,
            "keys": n_keys, "mean_instances_per_key": round(mine.sum() / max(n_keys, 1), 4),
            "records_written": sum(r["player"] == role for r in made.records),
            "records_left_out": made.left_out[role],
        }
    return players


def build_game(cfg: AggregationConfig, game: str, rollouts: Path, labels_path: Path,
               records_path: Path, limits: Limits | None = None) -> dict:
    """The build stage: writes the records of the labelled rollouts, with one reward per
    grouping rule (``reward`` and ``raw_reward`` always); returns the metrics."""
    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    labels, chosen_k = read_labels(labels_path, utt)
    made = make_records(utt, labels, cfg, limits)
    diagnostics = None
    if made.by_rule.get("true_intention") is not None:
        group, rewards = made.by_rule["true_intention"]
        diagnostics = grouping_diagnostics(made, replace(
            made, labels=true_intention_labels(utt), group=group, rewards=rewards))
    write_jsonl(records_path, made.records)
    return {"game": game, "gamma": cfg.gamma, "history_window": cfg.history_window,
            "aggregation": cfg.aggregation, "similarity_threshold": cfg.similarity_threshold,
            "records": len(made.records),
            "players": variance_metrics(made, chosen_k), "grouping": diagnostics,
            "grouping_rules": {rule: None if result is None
                               else rule_metrics(result[0], made.instances, utt.roles)
                               for rule, result in made.by_rule.items()}}
