"""Lock-step batched play: many episodes advance together, one batched generate per policy.

At each step every unfinished episode asks its player to move; the pending prompts are grouped
by the policy that plays that seat and answered in batches. Self-play (rollout stage) puts one
policy in every seat; evaluation puts the evaluated policy in one seat and the opponent in the
other.
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from tqdm import tqdm

from src import distributed
from src.engines import EngineConfig
from src.games import GamesConfig, make_game
from src.games.base import Game, prepare_moves
from src.limits import Limits, split_episodes
from src.policy.policy import GenerationStats, Policy
from src.policy.prefix_cache import PrefixCache
from src.policy.sampling import SamplingConfig, row_seed


@dataclass
class RolloutConfig:
    episodes: int  # episodes per game
    seed: int  # episode i is played with game seed (seed + i); its sampling from (seed, seed + i, turn)
    sampling: SamplingConfig
    engine: EngineConfig  # what generates every reply (rollout, evaluate, validation, online)

    def validate(self) -> str | None:
        return None if self.episodes >= 1 else "episodes must be >= 1"


Seats = dict[str, Policy]


def seeded_rollout(cfg: RolloutConfig, train_seed: int) -> RolloutConfig:
    """Training seed s plays its own episodes: game seeds from ``seed + s * episodes`` on, so
    the seeds' datasets are disjoint and each is a function of its seed alone."""
    return dataclasses.replace(cfg, seed=cfg.seed + train_seed * cfg.episodes)


def turn_seeds(seed: int, episode_seeds: list[int], games: list[Game], group: list[int]) -> list[int]:
    """The sampling seed of each pending move: (stage seed, episode seed, turn). A move's
    sample depends on nothing else, so neither the batch size nor which episodes are played
    together (or on which process) changes an episode."""
    return [row_seed(seed, episode_seeds[i], len(games[i].turns)) for i in group]


def play(games: list[Game], seats: list[Seats], sampling: SamplingConfig, seed: int,
         desc: str = "episodes", episode_seeds: list[int] | None = None) -> None:
    """Play every game to the end; ``seats[i]`` maps game i's players to policies. Each
    (game, player) conversation keeps its key/values between turns in a cache per policy
    (``sampling.prefix_cache_gb`` each), dropped when the game ends. Move t of game i is
    sampled with seed (``seed``, ``episode_seeds[i]``, t); episode seeds default to the games'
    own seeds."""
    if episode_seeds is None:
        episode_seeds = [g.seed if g.seed is not None else i for i, g in enumerate(games)]
    budget = int(sampling.prefix_cache_gb * 2**30)
    caches = {id(p): PrefixCache(budget) for s in seats for p in s.values()} if budget else {}
    step = 0
    with tqdm(total=len(games), desc=desc, unit="ep", dynamic_ncols=True) as bar:
        while True:
            pending: dict[int, list[int]] = {}
            for i, game in enumerate(games):
                if not game.done:
                    pending.setdefault(id(seats[i][game.to_move]), []).append(i)
            if not pending:
                return
            bar.set_postfix(step=step, playing=sum(map(len, pending.values())))
            for key, group in pending.items():
                policy = seats[group[0]][games[group[0]].to_move]
                replies = policy.generate([games[i].observation() for i in group], sampling,
                                          seed=turn_seeds(seed, episode_seeds, games, group),
                                          cache=caches.get(key),
                                          keys=[(i, games[i].to_move) for i in group])
                prepare_moves([games[i] for i in group], replies)
                for i, text in zip(group, replies):
                    games[i].step(text)
                    if games[i].done:
                        bar.update()
                        for cache in caches.values():
                            cache.forget([(i, p) for p in games[i].players])
                step += 1


def episode_record(game: Game, episode_id: str, policies: dict[str, str],
                   sampling: SamplingConfig) -> dict:
    record = game.record()
    record["episode_id"] = episode_id
    record["policy"] = {"models": policies, "sampling": vars(sampling).copy()}
    return record


def self_play(game_name: str, games_cfg: GamesConfig, policy: Policy,
              cfg: RolloutConfig, limits: Limits | None = None) -> tuple[list[dict], dict]:
    """The rollout stage: ``cfg.episodes`` self-play episodes and their metrics. With
    ``limits``, episodes over the size limits are left out of the returned records and
    counted in the metrics (which describe every episode played)."""
    games = []
    for i in range(cfg.episodes):
        game = make_game(game_name, games_cfg)
        game.reset(cfg.seed + i)
        games.append(game)
    mine = [games[i] for i in distributed.shard(len(games))]  # all of them in one process
    policy.stats = type(policy.stats)()
    play(mine, [{p: policy for p in g.players} for g in mine], cfg.sampling, cfg.seed,
         desc=f"rollout {game_name}")
    records = distributed.gather_in_order(
        [episode_record(g, f"{game_name}-{g.seed:06d}", {p: policy.name for p in g.players},
                        cfg.sampling) for g in mine], len(games))
    metrics = {**rollout_metrics(records, gathered_stats(policy.stats)), "engine": cfg.engine.kind}
    if limits is not None:
        records, metrics["episodes_left_out"] = split_episodes(records, limits)
        metrics["episodes_written"] = len(records)
    return records, metrics


def gathered_stats(stats: GenerationStats) -> GenerationStats:
    """Generation counts summed over processes; seconds: the slowest process (they generate
    at the same time)."""
    every = distributed.gather_all(stats)
    total = GenerationStats()
    for one in every:
        total.add(one)
    total.seconds = max(one.seconds for one in every)
    return total


def rollout_metrics(records: list[dict], stats: GenerationStats) -> dict:
    players = sorted({p for r in records for p in r["rewards"]})
    policy_turns = [t for r in records for t in r["turns"] if t["speaker"] != "env"]
    metrics = {
        "episodes": len(records),
        "mean_reward": {p: round(statistics.fmean(r["rewards"][p] for r in records), 4)
                        for p in players},
        "invalid_move_rate": round(sum(not t["valid"] for t in policy_turns) / max(1, len(policy_turns)), 4),
        "mean_policy_turns": round(len(policy_turns) / len(records), 3),
        "generated_tokens": stats.generated_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "prompt_tokens_reused": stats.reused_prompt_tokens,  # not recomputed
        "generation_seconds": round(stats.seconds, 2),
        "generated_tokens_per_second": round(stats.generated_tokens / max(stats.seconds, 1e-9), 2),
    }
    for flag, name in (("deal", "deal_rate"), ("solved", "solve_rate")):
        if all(flag in r["outcome"] for r in records):
            metrics[name] = round(statistics.fmean(bool(r["outcome"][flag]) for r in records), 4)
    return metrics
