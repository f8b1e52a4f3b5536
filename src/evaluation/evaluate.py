"""Evaluation (docs/method.md §10): every policy on a fixed list of episodes, rates with 95 %
intervals.

Two-player games: each evaluated policy plays every setup twice, once as Alice and once as
Bob, against the same fixed opponent (default: the base model), so first-mover advantage
cancels out. Single-agent games: each policy plays the same fixed seeds (hence targets).
Setups are distinct until the game has no new one left (a seed that draws a setup already in
the list is skipped), so no setup counts twice by accident.

Every policy plays the same episode list (paired design): ``comparisons`` compare two policies
episode by episode (McNemar's exact test on the main rate, a paired bootstrap on the mean
reward) and state the smallest difference the design can detect (docs/method.md §13). With sampling
(temperature > 0) the base model against itself is a real measurement, not a mirror image.
Evaluation seeds start at ``evaluate.seed`` (1 000 000), far from the rollout (0, 1, …) and
online (500 000, …) seeds, so no policy is scored on a setup it was trained on.

All policies of a game play in one lock-step batch: the opponent's prompts from every match-up
share its generate calls, which is what makes five policies fit the CPU budget.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


from src import distributed
from src.engines import Generation
from src.engines.openai_chat import EndpointConfig
from src.games import GamesConfig, make_game
from src.games.base import Game
from src.io_utils import InputError
from src.policy.policy import Policy
from src.policy.prefix_cache import PrefixCache
from src.policy.sampling import SamplingConfig
from src.rollout.play import episode_record, play
from src.evaluation.stats import compare_paired, rate_summary

OPENAI_OPPONENT = "openai"  # evaluate.opponent: the model at evaluate.endpoint


@dataclass
class PrimaryComparison:
    """The comparison the study is sized for: its policies play more episodes of the games that
    carry signal (the others would spend the time on ties), on the same seeds as everyone's
    first ``episodes``, so every comparison is still paired over the episodes both played."""
    policies: list[str]  # the primary comparison's two policies (where both are evaluated)
    episodes: int  # per policy on each game in ``games`` (even)
    games: list[str]  # the games with signal (chosen on rollout data, never on evaluation's)


@dataclass
class EvaluateConfig:
    policies: dict[str, str]  # policy name -> model / adapter folder ("{seed}": the training seed evaluated)
    opponent: str  # fixed rival in two-player games: a model folder, or "openai" (endpoint)
    endpoint: EndpointConfig  # opponent "openai": the served model
    episodes: int  # per policy and game (the primary comparison: more); two-player: episodes/2 setups x both seats
    seed: int  # first evaluation seed, disjoint from rollout / online seeds
    sampling: SamplingConfig
    comparisons: list[list[str]]  # [a, b]: paired test of a vs b
    primary_comparison: PrimaryComparison

    def validate(self) -> str | None:
        if not self.policies:
            return "policies must name at least one policy"
        if self.opponent == OPENAI_OPPONENT and self.endpoint.problem("opponent"):
            return self.endpoint.problem("opponent")
        for pair in self.comparisons:
            if len(pair) != 2 or not set(pair) <= set(self.policies) or pair[0] == pair[1]:
                return f"comparisons: {pair} should be two different policies of 'policies'"
        primary = self.primary_comparison
        if len(set(primary.policies)) != 2:
            return f"primary_comparison.policies {primary.policies} must be two different names"
        if min(self.episodes, primary.episodes) < 2 or self.episodes % 2 or primary.episodes % 2:
            return ("episodes and primary_comparison.episodes must be even numbers >= 2 "
                    "(two-player games play both seats)")
        if primary.episodes < self.episodes:
            return "primary_comparison.episodes must be at least episodes"
        return None

    def for_seed(self, seed: int) -> "EvaluateConfig":
        """The policies trained with training seed ``seed`` (folders with "{seed}" filled in)."""
        return dataclasses.replace(self, policies={name: folder.replace("{seed}", str(seed))
                                                   for name, folder in self.policies.items()})

    def episodes_per_policy(self, game: str) -> dict[str, int]:
        """How many of the game's fixed episodes each policy plays (a prefix of one list)."""
        primary = self.primary_comparison
        more = game in primary.games
        return {name: primary.episodes if more and name in primary.policies else self.episodes
                for name in self.policies}


@dataclass
class Match:
    """One evaluation episode: which policy is evaluated, in which seat."""
    policy: str
    seat: str
    game: Game


def schedule(game_name: str, games_cfg: GamesConfig, episodes: dict[str, int],
             first_seed: int) -> list[Match]:
    """The fixed episode list: per policy, mirrored setups (two-player) or fixed seeds; a
    policy with fewer ``episodes`` than another plays the first of the same list."""
    players = make_game(game_name, games_cfg).players
    most = max(episodes.values())
    per_seat = most if len(players) == 1 else most // 2
    plan = [(seed, seat) for seed in distinct_setup_seeds(game_name, games_cfg, first_seed, per_seat)
            for seat in players]
    matches = []
    for name, count in episodes.items():
        for seed, seat in plan[:count]:
            game = make_game(game_name, games_cfg)
            game.reset(seed)
            matches.append(Match(name, seat, game))
    return matches


def play_matches(game_names: list[str], games_cfg: GamesConfig, policies: dict[str, Policy | GreedyMemo],
                 opponent: Policy | GreedyMemo | None, episodes: int | dict[str, int],
                 first_seed: int, sampling: SamplingConfig, desc: str,
                 sharded: bool = True) -> list[dict]:
    """Every policy plays the same episode list (the other seat: ``opponent``), ``episodes``
    of it (per policy, or one count for all); one record per episode, tagged with the
    evaluated policy and seat. Evaluation and the training-time
    validation curves both play through here; several games advance together in one lock-step
    loop (larger batches). ``sharded``: each process plays its share and every process gets all
    records back in order (validation runs on the main process alone)."""
    counts = episodes if isinstance(episodes, dict) else dict.fromkeys(policies, episodes)
    matches = [m for game_name in game_names
               for m in schedule(game_name, games_cfg, counts, first_seed)]
    seats = [{p: policies[m.policy] if p == m.seat else opponent for p in m.game.players}
             for m in matches]
    mine = distributed.shard(len(matches)) if sharded else range(len(matches))
    play([matches[i].game for i in mine], [seats[i] for i in mine], sampling, first_seed, desc=desc)
    records = []
    for m, seat_map in ((matches[i], seats[i]) for i in mine):
        record = episode_record(m.game, f"{m.game.name}-{m.policy}-{m.game.seed}-{m.seat}",
                                {p: pol.name for p, pol in seat_map.items()}, sampling)
        record["evaluation"] = {"policy": m.policy, "seat": m.seat}
        records.append(record)
    return distributed.gather_in_order(records, len(matches)) if sharded else records


def distinct_setup_seeds(game_name: str, games_cfg: GamesConfig, first: int, count: int,
                         patience: int = 1000) -> list[int]:
    """``count`` seeds from ``first`` on whose setups differ; once ``patience`` seeds in a row
    bring nothing new (every setup of the game is listed), repeats start a new round."""
    seeds, seen, seed, misses = [], set(), first, 0
    game = make_game(game_name, games_cfg)
    while len(seeds) < count:
        game.reset(seed)
        setup = json.dumps(game.setup, sort_keys=True)
        if setup not in seen or misses >= patience:
            seen = set() if setup in seen else seen
            seen.add(setup)
            seeds.append(seed)
            misses = 0
        else:
            misses += 1
        seed += 1
    return seeds


class GreedyMemo:
    """A policy under greedy decoding: the reply is a function of the prompt, so each distinct
    prompt is generated once. Repeats are common in evaluation: a single-agent opening does
    not depend on the hidden target, base-vs-base episodes are the same from either seat, and
    the opponent sees the same history whenever two policies said the same thing."""

    def __init__(self, policy: Policy):
        self.policy, self.name, self.stats = policy, policy.name, policy.stats
        self.replies: dict[str, str] = {}

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig,
                 seed: int | list[int], cache: PrefixCache | None = None,
                 keys: list | None = None) -> list[str]:
        memo = [json.dumps(c, sort_keys=True) for c in conversations]
        new = {m: i for i, m in enumerate(memo) if m not in self.replies}
        if new:
            rows = list(new.values())
            replies = self.policy.generate([conversations[i] for i in rows], sampling,
                                           seed if isinstance(seed, int) else [seed[i] for i in rows],
                                           cache, keys and [keys[i] for i in rows])
            self.replies.update(zip(new, replies))
        return [self.replies[m] for m in memo]


def load_policies(cfg: EvaluateConfig, generation: Generation,
                  two_player: bool) -> dict[str, Policy | GreedyMemo]:
    """Policies by folder (the opponent ``openai``: by its endpoint), on ``generation``'s
    engine; one folder loaded once, so base-as-evaluated and base-as-opponent share a model
    (and its batches)."""
    served = two_player and cfg.opponent == OPENAI_OPPONENT
    paths = set(cfg.policies.values()) | ({cfg.opponent} if two_player and not served else set())
    missing = sorted(p for p in paths if not Path(p).exists())
    if missing:
        raise InputError(f"policy folder(s) not found: {', '.join(missing)}")
    policies = {p: generation.policy(p, name=p) for p in sorted(paths)}
    if served:
        policies[OPENAI_OPPONENT] = cfg.endpoint.policy()
    if cfg.sampling.temperature == 0:
        return {p: GreedyMemo(policy) for p, policy in policies.items()}
    return policies


def evaluate_game(game_name: str, games_cfg: GamesConfig, cfg: EvaluateConfig,
                  generation: Generation, train_seed: int = 0) -> tuple[list[dict], dict]:
    """Play the fixed episode list for every policy of training seed ``train_seed``; return
    (episode records, metrics). Every seed's policies play the same episodes."""
    cfg = cfg.for_seed(train_seed)
    two_player = len(make_game(game_name, games_cfg).players) == 2
    by_path = load_policies(cfg, generation, two_player)
    began = time.perf_counter()
    episodes = cfg.episodes_per_policy(game_name)
    records = play_matches([game_name], games_cfg,
                           {name: by_path[path] for name, path in cfg.policies.items()},
                           by_path.get(cfg.opponent), episodes, cfg.seed, cfg.sampling,
                           desc=f"evaluate {game_name}")
    seconds, generated, prompts = gathered_counts(time.perf_counter() - began, by_path.values())
    metrics = {
        "game": game_name,
        "primary": "win_rate" if two_player else "success_rate",
        "episodes_per_policy": episodes,
        "primary_comparison": (cfg.primary_comparison.policies
                               if game_name in cfg.primary_comparison.games else None),
        "opponent": (cfg.endpoint.policy().name if cfg.opponent == OPENAI_OPPONENT else cfg.opponent)
                    if two_player else None,
        "engine": generation.cfg.kind,
        "seed": cfg.seed,
        "train_seed": train_seed,
        "seconds": round(seconds, 1),
        "generated_tokens": generated,
        "prompts_generated": prompts,  # after GreedyMemo (memoised per process)
        "policy_order": list(cfg.policies),  # the JSON file sorts keys; the report keeps this
        "policies": {name: policy_metrics([r for r in records if r["evaluation"]["policy"] == name])
                     for name in cfg.policies},
        "comparisons": [comparison(records, a, b, cfg.seed) for a, b in cfg.comparisons],
    }
    return records, metrics


def won(record: dict) -> bool:
    """The main rate's event for the evaluated seat: solved, or a strictly higher payoff."""
    if "solved" in record["outcome"]:
        return bool(record["outcome"]["solved"])
    return record["rewards"][record["evaluation"]["seat"]] == 1.0


def comparison(records: list[dict], a: str, b: str, seed: int) -> dict:
    """``a`` vs ``b`` over the episodes both played (same seed, same seat)."""
    by_policy = {name: {(r["seed"], r["evaluation"]["seat"]): r for r in records
                        if r["evaluation"]["policy"] == name} for name in (a, b)}
    pairs = sorted(by_policy[a].keys() & by_policy[b].keys())
    first, second = ([by_policy[name][k] for k in pairs] for name in (a, b))
    own_reward = lambda r: float(r["rewards"][r["evaluation"]["seat"]])  # noqa: E731
    return {"a": a, "b": b, **compare_paired([won(r) for r in first], [won(r) for r in second],
                                             [own_reward(r) for r in first],
                                             [own_reward(r) for r in second], seed)}
def gathered_counts(seconds: float, policies) -> tuple[float, int, int]:
    """(slowest process's seconds, generated tokens, prompts generated) over all processes."""
    every = distributed.gather_all((seconds, sum(p.stats.generated_tokens for p in policies),
                                    sum(p.stats.prompts for p in policies)))
    return (max(s for s, _, _ in every), sum(g for _, g, _ in every),
            sum(n for _, _, n in every))


def policy_metrics(records: list[dict]) -> dict:
    """Rates of the evaluated seat over its episodes (see module docstring)."""
    own_turns = [t for r in records for t in r["turns"]
                 if t["speaker"] == r["evaluation"]["seat"]]
    metrics = {
        "episodes": len(records),
        "invalid_move_rate": rate_summary(sum(not t["valid"] for t in own_turns), len(own_turns)),
        "truncated_move_rate": rate_summary(sum(t.get("truncated", False) for t in own_turns),
                                            len(own_turns)),
        "mean_reward": round(statistics.fmean(r["rewards"][r["evaluation"]["seat"]]
                                              for r in records), 4),
    }
    if len(records[0]["rewards"]) == 1:
        solved = [r for r in records if r["outcome"]["solved"]]
        metrics["success_rate"] = rate_summary(len(solved), len(records))
        metrics["mean_turns_to_solve"] = (
            round(statistics.fmean(r["outcome"]["turns"] for r in solved), 3) if solved else None)
        return metrics
    # The game's own reward says who won (1), tied (0.5, no deal included) or lost (0): payoff
    # strictly higher, compared as the game compares them.
    own_rewards = [r["rewards"][r["evaluation"]["seat"]] for r in records]
    metrics["win_rate"] = rate_summary(sum(w == 1.0 for w in own_rewards), len(records))
    metrics["tie_rate"] = rate_summary(sum(w == 0.5 for w in own_rewards), len(records))
    metrics["deal_rate"] = rate_summary(sum(bool(r["outcome"]["deal"]) for r in records),
                                        len(records))
    metrics["mean_payoff_share"] = payoff_share(records)
    return metrics


def payoff_share(records: list[dict]) -> dict:
    """Mean share of the total payoff won by the evaluated seat, over deals whose total is
    positive (a no-deal 0/0 has no share; a negotiation deal below Alice's value has a
    negative total)."""
    shares = []
    for r in records:
        payoffs, seat = r["outcome"]["payoffs"], r["evaluation"]["seat"]
        total = sum(payoffs.values())
        if r["outcome"]["deal"] and total > 0:
            shares.append(payoffs[seat] / total)
    return {"mean": round(statistics.fmean(shares), 4) if shares else None, "n": len(shares)}
