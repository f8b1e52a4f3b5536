"""Where a rollout's time goes: prefill, decode, sampling, key/value cache copies, the rest.

    python bench/decode_profile.py --game bargaining --episodes 16
    python bench/decode_profile.py --game bargaining --episodes 16 --json bench/results/decode_profile-cpu2.json
    python bench/decode_profile.py --game bargaining --episodes 64 --float32-only   # a CPU without bf16 units

Plays ``--episodes`` rollout episodes (params.yaml's model, game and rollout sampling, the
rollout's own per-episode seeds) through ``src.rollout.play.play`` twice: in float32 and under
bf16 autocast. Each run times the model's forward passes (split into prefill, the passes over
a prompt's new tokens, and decode, one token per row), token picking, the cache copies (left
padding cached prefixes into a batch, dropping finished rows, storing and looking up
conversations) and counts the tokens each pass computes (padding included) and the real ones.
It measures the CPU's matmul rate in both dtypes (a 2048 x 2048 product) and prints, per
phase, the achieved GFLOP/s (2 x parameters per token, plus the output layer for each scored
row) as a share of that limit. The bf16 run's episodes are compared with float32's: the count
of identical episodes is the tolerance stated.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.config import load_section  # noqa: E402
from src.games import GamesConfig, make_game  # noqa: E402
from src.paths import BASE_MODEL  # noqa: E402
from src.policy import policy as policy_module  # noqa: E402
from src.policy import prefix_cache  # noqa: E402
from src.policy.policy import Policy  # noqa: E402
from src.rollout.play import RolloutConfig, episode_record, play  # noqa: E402


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - began) / 1e9


class Timers:
    """Seconds and calls per phase; token counts per forward kind."""

    def __init__(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)
        self.tokens = defaultdict(int)

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - began
                self.calls[phase] += 1
        return timed


@contextlib.contextmanager
def instrumented(policy: Policy, timers: Timers):
    """Time the policy's forward passes and its cache and sampling helpers while inside."""
    model, forward = policy.model, policy.model.forward

    def timed_forward(*args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        kind = "prefill" if ids.shape[1] > 1 else "decode"
        timers.tokens[f"{kind}_computed"] += ids.numel()
        real = int(mask[:, -ids.shape[1]:].sum()) if mask is not None else ids.numel()
        timers.tokens[f"{kind}_real"] += real
        timers.tokens[f"{kind}_rows"] += ids.shape[0]  # one output-layer row each
        return timers.wrap(kind, forward)(*args, **kwargs)

    patches = [(model, "forward", timed_forward),
               (policy_module, "pick_tokens", timers.wrap("sampling", policy_module.pick_tokens)),
               (policy_module.DynamicCache, "batch_select_indices",
                timers.wrap("cache: drop finished rows", policy_module.DynamicCache.batch_select_indices)),
               (prefix_cache.PrefixCache, "store", timers.wrap("cache: store", prefix_cache.PrefixCache.store)),
               (prefix_cache.PrefixCache, "lookup", timers.wrap("cache: lookup", prefix_cache.PrefixCache.lookup))]
    padded = Policy._padded_prefixes
    patches.append((Policy, "_padded_prefixes",
                    lambda self, reuse, width: iter(timers.wrap("cache: pad prefixes into batch",
                                                                lambda: list(padded(self, reuse, width)))())))
    generate_batch = Policy._generate_batch
    patches.append((Policy, "_generate_batch", timers.wrap("generate_batch", generate_batch)))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        if "forward" in model.__dict__:
            del model.forward


def run(policy: Policy, game_name: str, games_cfg: GamesConfig, cfg: RolloutConfig,
        episodes: int, autocast: bool) -> tuple[dict, list[str]]:
    games = []
    for i in range(episodes):
        game = make_game(game_name, games_cfg)
        game.reset(cfg.seed + i)  # as the rollout stage
        games.append(game)
    timers = Timers()
    began = time.perf_counter()
    with instrumented(policy, timers), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        play(games, [{p: policy for p in g.players} for g in games], cfg.sampling, cfg.seed,
             desc=f"{game_name} ({'bf16' if autocast else 'float32'})")
    wall = time.perf_counter() - began
    texts = [json.dumps(episode_record(g, str(g.seed), {}, cfg.sampling), sort_keys=True) for g in games]
    return {"wall_seconds": wall, "seconds": dict(timers.seconds), "calls": dict(timers.calls),
            "tokens": dict(timers.tokens)}, texts


def summary(result: dict, limit_gflops: float, flops_per_token: float, flops_per_row: float) -> dict:
    s, t = result["seconds"], result["tokens"]
    cache = sum(v for k, v in s.items() if k.startswith("cache:"))
    inside = s.get("generate_batch", 0.0) - s.get("prefill", 0.0) - s.get("decode", 0.0) \
        - s.get("sampling", 0.0) - s.get("cache: drop finished rows", 0.0) \
        - s.get("cache: pad prefixes into batch", 0.0)
    phases = {
        "prefill": s.get("prefill", 0.0), "decode": s.get("decode", 0.0),
        "sampling": s.get("sampling", 0.0), "cache copies": cache,
        "batch assembly and stored key/values (rest of a batch)": max(0.0, inside),
    }
    phases["game, prompts, tokenizer (rest of play)"] = max(0.0, result["wall_seconds"] - sum(phases.values()))
    out = {"wall_seconds": round(result["wall_seconds"], 2),
           "share": {k: round(v / result["wall_seconds"], 3) for k, v in phases.items()},
           "seconds": {k: round(v, 2) for k, v in phases.items()}, "tokens": t}
    for kind in ("prefill", "decode"):
        flops = t.get(f"{kind}_computed", 0) * flops_per_token + t.get(f"{kind}_rows", 0) * flops_per_row
        rate = flops / max(s.get(kind, 0.0), 1e-9) / 1e9
        out[f"{kind}_gflops"] = round(rate, 1)
        out[f"{kind}_share_of_matmul_limit"] = round(rate / limit_gflops, 3)
        out[f"{kind}_real_tokens_per_second"] = round(t.get(f"{kind}_real", 0) / max(s.get(kind, 0.0), 1e-9), 1)
    processed = t.get("prefill_real", 0) + t.get("decode_real", 0)
    out["processed_tokens_per_second"] = round(processed / result["wall_seconds"], 1)
    out["compute_limit_tokens_per_second"] = round(limit_gflops * 1e9 / flops_per_token, 1)
    return out


def emit(report: dict, path: Path | None) -> None:
    """Print the report and, given a path, write it there as JSON."""
    print(json.dumps(report, indent=2))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="bargaining")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--float32-only", action="store_true",
                        help="skip the bf16 autocast run (CPUs without bf16 units emulate it slowly)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("rollout", RolloutConfig)
    policy = Policy.load(BASE_MODEL, "float32", "cpu", name="base")
    config = policy.model.config
    embedding = config.vocab_size * config.hidden_size
    params = sum(p.numel() for p in policy.model.parameters())
    flops_per_token = 2 * (params - embedding)  # the output layer is tied to the embedding
    flops_per_row = 2 * embedding  # logits of one position
    runs = (("float32", False),) if args.float32_only else (("float32", False), ("bf16", True))
    limits = {name: matmul_gflops(torch.bfloat16 if autocast else torch.float32) for name, autocast in runs}
    results, texts = {}, {}
    for name, autocast in runs:
        raw, texts[name] = run(policy, args.game, games_cfg, cfg, args.episodes, autocast)
        results[name] = summary(raw, limits[name], flops_per_token, flops_per_row)
    report = {"game": args.game, "episodes": args.episodes, "threads": torch.get_num_threads(),
              "matmul_gflops": {k: round(v, 1) for k, v in limits.items()},
              "flops_per_token": flops_per_token, "runs": results}
    if "bf16" in results:
        report["bf16_identical_episodes"] = sum(a == b for a, b in zip(texts["float32"], texts["bf16"]))
        report["bf16_speedup"] = round(results["float32"]["wall_seconds"] / results["bf16"]["wall_seconds"], 3)
    emit(report, args.json)


if __name__ == "__main__":
    main()
