"""Nucleus sampling from the top candidates (``topk``, ours) vs a stable sort of the whole
vocabulary for every row and step (the loop before).

    python bench/nucleus_topk.py --game bargaining --episodes 64

Plays the rollout stage's first ``--episodes`` episodes of a game (params.yaml's model, game,
sampling and seeds) through ``src.rollout.play.play`` once with each rule, timed as
``decode_profile.py`` times them, and prints both wall times, the seconds spent picking
tokens, and how many episodes came out identical (the two rules keep the same tokens, so all).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_profile import emit, run  # noqa: E402
from src.config import load_section  # noqa: E402
from src.games import GamesConfig  # noqa: E402
from src.paths import BASE_MODEL  # noqa: E402
from src.policy import sampling  # noqa: E402
from src.policy.policy import Policy  # noqa: E402
from src.rollout.play import RolloutConfig  # noqa: E402


def full_sort(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    return probs.scatter(-1, order, ranked.masked_fill((ranked.cumsum(-1) - ranked) >= top_p, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="bargaining")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("rollout", RolloutConfig)
    policy = Policy.load(BASE_MODEL, "float32", "cpu", name="base")
    ours = sampling.nucleus
    results, texts = {}, {}
    for name, rule in (("topk", ours), ("full_sort", full_sort)):
        sampling.nucleus = rule
        try:
            raw, texts[name] = run(policy, args.game, games_cfg, cfg, args.episodes, autocast=False)
        finally:
            sampling.nucleus = ours
        results[name] = {"wall_seconds": round(raw["wall_seconds"], 2),
                         "picking_seconds": round(raw["seconds"].get("sampling", 0.0), 2)}
    report = {"game": args.game, "episodes": args.episodes, "threads": torch.get_num_threads(),
              "runs": results,
              "speedup": round(results["full_sort"]["wall_seconds"] / results["topk"]["wall_seconds"], 3),
              "identical_episodes": sum(a == b for a, b in zip(texts["topk"], texts["full_sort"]))}
    emit(report, args.json)


if __name__ == "__main__":
    main()
