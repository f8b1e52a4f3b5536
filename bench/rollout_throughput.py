"""Lock-step batched rollout vs one episode at a time, same episodes, same model.

    python bench/rollout_throughput.py --game twenty_questions --episodes 16

Prints generated tokens/s and wall time for both and the speed-up. Greedy decoding, so both
modes play the same episodes (up to float round-off in padded batches). Both modes reuse each
conversation's prefix cache between turns (``--no-prefix-cache`` turns it off in both).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.config import load_section  # noqa: E402
from src.games import GamesConfig, make_game  # noqa: E402
from src.policy import GenerationStats, Policy, SamplingConfig  # noqa: E402
from src.rollout import play  # noqa: E402


def run(policy: Policy, game_name: str, games_cfg: GamesConfig, seeds: list[int],
        sampling: SamplingConfig, batched: bool) -> tuple[float, GenerationStats, int]:
    games = []
    for seed in seeds:
        game = make_game(game_name, games_cfg)
        game.reset(seed)
        games.append(game)
    policy.stats = GenerationStats()
    start = time.perf_counter()
    groups = [games] if batched else [[g] for g in games]
    for group in groups:
        play(group, [{p: policy for p in g.players} for g in group], sampling, seed=0,
             desc="batched" if batched else "one at a time")
    turns = sum(len(g.turns) for g in games)
    return time.perf_counter() - start, policy.stats, turns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default="twenty_questions")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false")
    args = parser.parse_args()
    games_cfg = load_section("games", GamesConfig)
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=40, batch_size=args.episodes,
                              prefix_cache_gb=4.0 if args.prefix_cache else 0.0)
    policy = Policy.load(args.model, device="cpu")
    seeds = list(range(args.episodes))
    run(policy, args.game, games_cfg, seeds[:1], sampling, batched=False)  # warm-up: oracle embedder, kernels
    results = {}
    for batched in (True, False):
        seconds, stats, turns = run(policy, args.game, games_cfg, seeds, sampling, batched)
        results[batched] = stats.generated_tokens / seconds
        mode = "batched lock-step" if batched else "one at a time"
        print(f"{mode:18s} episodes={args.episodes} turns={turns} prompt_tokens={stats.prompt_tokens} "
              f"reused={stats.reused_prompt_tokens} generated_tokens={stats.generated_tokens} "
              f"seconds={seconds:.1f} tokens/s={results[batched]:.1f}")
    print(f"speed-up (tokens/s, batched / one at a time): {results[True] / results[False]:.2f}x")


if __name__ == "__main__":
    main()
