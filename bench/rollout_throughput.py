"""Lock-step batched rollout vs one episode at a time, same episodes, same model.

    python bench/rollout_throughput.py --game twenty_questions --episodes 16
    python bench/rollout_throughput.py --game twenty_questions --episodes 16 --peer
    .venv-vllm/bin/python bench/rollout_throughput.py --game bargaining --episodes 16 --peer --vllm

Prints generated tokens/s and wall time for both and the speed-up. Greedy decoding, so both
modes play the same episodes (up to float round-off in padded batches). Both modes reuse each
conversation's prefix cache between turns (``--no-prefix-cache`` turns it off in both).

``--peer`` instead compares our decode loop with transformers' own ``model.generate`` on the
same lock-step episodes, side by side in one run: the same batches of prompts each turn, but
``generate`` prefills every prompt in full (no key/values kept across turns, no shared batch
prefix). It prints both wall times, the ratio, and how many episodes came out identical.
``--vllm`` adds vLLM (src/engines/vllm_engine.py, automatic prefix caching) as a third engine
on the same episodes; it runs where vLLM installs (scripts/setup_vllm.sh). Each engine's
processed tokens/s (prompt tokens it computed + generated tokens; vLLM's prefix-cache hits are
not visible here, so its figure counts every prompt token) is set against the compute limit:
the CPU's measured matmul rate over 2 x the non-embedding parameters per token.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.decode_profile import matmul_gflops  # noqa: E402
from src.config import defaults, load_section  # noqa: E402
from src.games import GamesConfig, make_game  # noqa: E402
from src.policy.policy import GenerationStats, Policy  # noqa: E402
from src.policy.sampling import SamplingConfig  # noqa: E402
from src.rollout.play import play  # noqa: E402


class PeerPolicy:
    """The same policy, generating with transformers' ``model.generate`` (greedy, left-padded
    batches of ``sampling.batch_size``, stopping at the policy's end tokens); the prefix cache
    ``play`` offers is ignored."""

    def __init__(self, policy: Policy):
        self.policy, self.name, self.stats = policy, policy.name, GenerationStats()

    @torch.no_grad()
    def generate(self, conversations, sampling: SamplingConfig, seed, cache=None, keys=None):
        policy, tok = self.policy, self.policy.tokenizer
        prompts = [policy.chat.prompt_ids(m) for m in conversations]
        replies = [""] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        pad = tok.pad_token_id if tok.pad_token_id is not None else policy.chat.end_ids[0]
        for start in range(0, len(order), sampling.batch_size):
            idx = order[start:start + sampling.batch_size]
            began = time.perf_counter()
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            out = policy.model.generate(input_ids=ids.to(policy.device),
                                        attention_mask=mask.to(policy.device),
                                        max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                        eos_token_id=policy.chat.end_ids, pad_token_id=pad)
            generated = 0
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                cut = next((j for j, t in enumerate(new) if t in policy.chat.end_ids), len(new))
                replies[i] = tok.decode(new[:cut], skip_special_tokens=True).strip()
                generated += cut
            self.stats.add(GenerationStats(len(idx), sum(len(prompts[i]) for i in idx), 0,
                                           generated, time.perf_counter() - began))
        return replies


def new_games(game_name: str, games_cfg: GamesConfig, seeds: list[int]):
    games = []
    for seed in seeds:
        game = make_game(game_name, games_cfg)
        game.reset(seed)
        games.append(game)
    return games


def run(policy, game_name: str, games_cfg: GamesConfig, seeds: list[int],
        sampling: SamplingConfig, batched: bool) -> tuple[float, GenerationStats, int]:
    games = new_games(game_name, games_cfg, seeds)
    policy.stats = GenerationStats()
    start = time.perf_counter()
    groups = [games] if batched else [[g] for g in games]
    for group in groups:
        play(group, [{p: policy for p in g.players} for g in group], sampling, seed=0,
             desc="batched" if batched else "one at a time")
    turns = sum(len(g.turns) for g in games)
    return time.perf_counter() - start, policy.stats, turns


def compute_limit(policy: Policy) -> dict:
    """Tokens/s the CPU's float32 matmul rate allows: 2 FLOPs per non-embedding parameter."""
    config = policy.model.config
    params = sum(p.numel() for p in policy.model.parameters()) - config.vocab_size * config.hidden_size
    gflops = matmul_gflops(torch.float32)
    return {"matmul_gflops_float32": round(gflops, 1), "flops_per_token": 2 * params,
            "tokens_per_second": round(gflops * 1e9 / (2 * params), 1)}


def peer(policy: Policy, game_name: str, games_cfg: GamesConfig, seeds: list[int],
         sampling: SamplingConfig, engines: list[tuple[str, object]]) -> dict:
    """Our decode loop vs ``model.generate`` (and any other ``engines``) on the same
    lock-step episodes."""
    results, texts = {}, {}
    limit = compute_limit(policy)
    for mode, player in [("ours", policy), ("transformers generate", PeerPolicy(policy)), *engines]:
        games = new_games(game_name, games_cfg, seeds)
        player.stats = GenerationStats()
        start = time.perf_counter()
        play(games, [{p: player for p in g.players} for g in games], sampling, seed=0, desc=mode)
        seconds = time.perf_counter() - start
        texts[mode] = [[t.text for t in g.turns] for g in games]
        stats = player.stats
        processed = stats.prompt_tokens - stats.reused_prompt_tokens + stats.generated_tokens
        results[mode] = {"seconds": round(seconds, 2), "generated_tokens": stats.generated_tokens,
                         "prompt_tokens": stats.prompt_tokens,
                         "prompt_tokens_reused": stats.reused_prompt_tokens,
                         "processed_tokens_per_second": round(processed / seconds, 1),
                         "share_of_compute_limit": round(processed / seconds / limit["tokens_per_second"], 3),
                         "turns": sum(len(g.turns) for g in games),
                         "identical_episodes_to_ours": sum(a == b for a, b in zip(texts["ours"], texts[mode])),
                         "wall_time_ratio_to_ours": round(seconds / results["ours"]["seconds"], 3)
                         if results else 1.0}
        print(f"{mode:22s} episodes={len(seeds)} turns={results[mode]['turns']} "
              f"prompt_tokens={stats.prompt_tokens} reused={stats.reused_prompt_tokens} "
              f"generated_tokens={stats.generated_tokens} seconds={seconds:.1f} "
              f"tokens/s={stats.generated_tokens / seconds:.1f} "
              f"processed/s={processed / seconds:.1f} "
              f"({results[mode]['share_of_compute_limit']:.1%} of {limit['tokens_per_second']:.0f}) "
              f"identical to ours: {results[mode]['identical_episodes_to_ours']}/{len(seeds)}")
    return {"modes": results, "episodes": len(seeds), "compute_limit": limit,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default="twenty_questions")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--no-prefix-cache", dest="prefix_cache", action="store_false")
    parser.add_argument("--peer", action="store_true",
                        help="compare with transformers' model.generate on the same lock-step episodes")
    parser.add_argument("--vllm", action="store_true",
                        help="with --peer: vLLM as a third engine (where vLLM installs)")
    parser.add_argument("--json", type=Path, help="also write the figures here (--peer)")
    args = parser.parse_args()
    games_cfg = load_section("games", GamesConfig)
    sampling = defaults(SamplingConfig, "rollout.sampling", temperature=0.0,
                        max_new_tokens=args.max_new_tokens, batch_size=args.episodes,
                        prefix_cache_gb=4.0 if args.prefix_cache else 0.0)
    policy = Policy.load(args.model, device="cpu")
    seeds = list(range(args.episodes))
    run(policy, args.game, games_cfg, seeds[:1], sampling, batched=False)  # warm-up: oracle embedder, kernels
    if args.peer:
        engines = []
        if args.vllm:
            from src.engines.vllm_engine import VllmEngine

            engines.append(("vllm", VllmEngine(args.model).policy(name="vllm")))
        figures = peer(policy, args.game, games_cfg, seeds, sampling, engines)
        if args.json:
            args.json.write_text(json.dumps({"game": args.game, "model": args.model, **figures},
                                            indent=2) + "\n")
        return
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
