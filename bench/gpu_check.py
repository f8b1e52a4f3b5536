"""CUDA check of the project's own generation and training code on the SmolLM2-135M architecture.

    python bench/gpu_check.py --device cuda            # on a GPU machine
    python bench/gpu_check.py --device cpu --quick     # dry run: tiny shapes, a few tokens

The real SmolLM2 weights (538 MB) stay home, so the model is the SmolLM2-135M *architecture*
(config.json and the tokenizer, from ``--assets``) with random weights. It is saved to a temp
folder and loaded through ``src.policy.Policy.load`` / ``src.training.offline.train_offline``,
the same code the pipeline runs.

1. Batched sampling with ``Policy.generate`` on bargaining/negotiation observations (the
   single-agent games need the packaged MiniLM embedder for their oracle, so they are left
   out): bf16 at several batch sizes, fp32 at one. Random weights almost never emit an
   end-of-turn token, so nearly every row runs to max_new_tokens.
2. Offline REINFORCE steps (LoRA) through ``train_offline`` on the synthetic records of the
   tests: bf16 autocast (fp32 and bf16 weights) against fp32 without mixed precision.

Prints a table; with ``$OUT`` set, also writes ``$OUT/gpu_check.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from src.config import defaults  # noqa: E402
from src.games import GamesConfig, make_game  # noqa: E402
from src.policy.policy import GenerationStats, Policy  # noqa: E402
from src.policy.sampling import SamplingConfig  # noqa: E402
from src.training import offline  # noqa: E402
from src.paths import RunPaths  # noqa: E402
from src.training.offline import train_offline  # noqa: E402
from src.training.records import GAMES  # noqa: E402
from synthetic_records import records_by_game, train_config  # noqa: E402

ASSET_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja")
TWO_PLAYER = ("bargaining", "negotiation")
SCRIPTED = {"bargaining": ["Alice gets $55, Bob gets $45", "REJECT", "Alice gets $50, Bob gets $50",
                           "REJECT"],
            "negotiation": ["OFFER $115", "OFFER $104", "REJECT", "OFFER $110"]}


class MemoryLive:
    """In-memory stand-in for dvclive.Live (not installed on the GPU machine): the trainer only
    calls log_metric, next_step and end."""

    def __init__(self, *_, **__):
        self.rows: list[dict] = []
        self.current: dict = {}

    def log_metric(self, name, value, **_):
        self.current[name] = value

    def next_step(self):
        self.rows.append(self.current)
        self.current = {}

    def end(self):
        pass


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None


def build_random_model(assets: Path, out_dir: Path, quick: bool) -> dict:
    """SmolLM2-135M config (shrunk under --quick) with random weights, saved with the tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cfg = AutoConfig.from_pretrained(assets, trust_remote_code=False)
    if quick:
        cfg.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, trust_remote_code=False)
    if (assets / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(assets)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(assets, trust_remote_code=False).save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size}


def game_prompts(n: int) -> list[list[dict]]:
    """n observations: both two-player games, varied seeds and history lengths (0-3 moves)."""
    prompts = []
    for i in range(n):
        name = TWO_PLAYER[i % 2]
        game = make_game(name, defaults(GamesConfig, "games"))
        game.reset(1000 + i)
        for move in SCRIPTED[name][:i % 4]:
            game.step(move)
        prompts.append(game.observation())
    return prompts


def bench_generate(policy: Policy, batch: int, max_new: int, batches: int, device: str) -> dict:
    sampling = defaults(SamplingConfig, "rollout.sampling", temperature=0.8,
                        max_new_tokens=max_new, batch_size=batch)
    conversations = game_prompts(batch * batches)
    policy.stats = GenerationStats()
    reset_peak(device)
    sync(device)
    began = time.perf_counter()
    replies = policy.generate(conversations, sampling, seed=1)
    sync(device)
    wall = time.perf_counter() - began
    s = policy.stats
    slots = len(conversations) * max_new
    return {"batch": batch, "prompts": s.prompts, "batches": batches,
            "max_new_tokens": max_new, "prompt_tokens": s.prompt_tokens,
            "mean_prompt_tokens": round(s.prompt_tokens / max(1, s.prompts), 1),
            "generated_tokens": s.generated_tokens,
            "ran_to_max_share": round(s.generated_tokens / slots, 3),  # ~1: no EOS (random weights)
            "generate_seconds": round(s.seconds, 3), "wall_seconds": round(wall, 3),
            "generated_tok_per_s": round(s.generated_tokens / s.seconds, 1),
            "sample_reply": replies[0][:60], "peak_mib": peak_mib(device)}


def bench_train(model_dir: Path, work: Path, name: str, dtype: str, mixed: str, per_game: int,
                device: str, warmup: int) -> dict:
    """One train_offline run; per-step times from the trainer's own log_step calls (each follows
    a loss.item(), so the GPU is synchronised there)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)  # each run picks its own mixed precision
    stamps: list[float] = []
    entries: list[dict] = []
    original = offline.log_step

    def timed_log_step(live, entry):
        stamps.append(time.perf_counter())
        entries.append(dict(entry))
        original(live, entry)

    cfg = train_config(games=list(GAMES), mixed_precision=mixed, max_records_per_game=per_game,
                       batch_size=8, epochs=1, checkpoint_every=1000)
    paths = RunPaths(base=str(model_dir), output=work / name / "policy",
                     checkpoints=work / name / "ckpt", live=work / name / "live",
                     curves=work / name / "curves")
    offline.log_step = timed_log_step
    reset_peak(device)
    try:
        began = time.perf_counter()
        result = train_offline(records_by_game(per_game), "aria", cfg, dtype=dtype, paths=paths)
        total = time.perf_counter() - began
    finally:
        offline.log_step = original
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    timed = gaps[max(0, warmup - 1):] or gaps
    losses = [e["loss"] for e in entries]
    return {"name": name, "dtype": dtype, "mixed_precision": mixed, "steps": result["steps"],
            "records": result["records"], "trainer_device": str(AcceleratorState().device),
            "seconds_per_step_after_warmup": round(sum(timed) / len(timed), 4) if timed else None,
            "timed_steps": len(timed), "warmup_steps": warmup,
            "trainer_seconds_per_step": result["seconds_per_step"],
            "total_seconds": round(total, 2), "losses": [round(x, 4) for x in losses],
            "all_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
            "trainable_parameters": result["trainable_parameters"], "peak_mib": peak_mib(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few tokens (CPU dry run)")
    parser.add_argument("--assets", default=None,
                        help="folder with config.json + tokenizer (default .gpu_assets/smollm2_135m, "
                             "else models/base)")
    args = parser.parse_args()
    try:
        import dvclive  # noqa: F401
        live_note = "dvclive"
    except ImportError:
        # dvclive is not installed on the GPU machine: the trainer logs into memory instead.
        offline.open_live = lambda directory, history: MemoryLive()
        live_note = "in-memory stand-in (dvclive missing)"
    assets = Path(args.assets) if args.assets else next(
        (p for p in (ROOT / ".gpu_assets/smollm2_135m", ROOT / "models/base")
         if (p / "config.json").exists()), None)
    if assets is None:
        sys.exit("no model config found: pass --assets")
    device, quick = args.device, args.quick
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda but torch.cuda.is_available() is False")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows are true fp32
    batches = [2] if quick else [8, 32, 128]
    fp32_batch = 2 if quick else 32
    max_new = 4 if quick else 64
    per_game = 4 if quick else 32  # records per game (4 games, batch 8 per step)
    warmup = 1 if quick else 2

    import accelerate
    import peft
    import transformers
    env = {"device": device,
           "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "accelerate": accelerate.__version__,
           "peft": peft.__version__, "python": sys.version.split()[0], "live": live_note,
           "assets": str(assets), "quick": quick}
    print("env:", json.dumps(env), flush=True)
    report: dict = {"env": env, "generate": [], "train": []}
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        model_dir = work / "smollm2_135m_random"
        report["model"] = build_random_model(assets, model_dir, quick)
        print("model:", json.dumps(report["model"]), flush=True)

        for dtype, sizes in (("bfloat16", batches), ("float32", [fp32_batch])):
            began = time.perf_counter()
            policy = Policy.load(model_dir, dtype=dtype, device=device)
            load_s = time.perf_counter() - began
            assert policy.device.type == torch.device(device).type, policy.device
            bench_generate(policy, sizes[0], 2, 1, device)  # warm-up (kernels, allocator)
            for batch in sizes:
                row = {"dtype": dtype, "load_seconds": round(load_s, 2),
                       **bench_generate(policy, batch, max_new, 1 if quick else 3, device)}
                report["generate"].append(row)
                print("generate:", json.dumps(row), flush=True)
            del policy
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

        train_runs = [("bf16_amp_fp32_weights", "float32", "bf16"),
                      ("bf16_amp_bf16_weights", "bfloat16", "bf16"),
                      ("fp32_no_amp", "float32", "no")]
        for name, dtype, mixed in train_runs:
            row = bench_train(model_dir, work, name, dtype, mixed, per_game, device, warmup)
            report["train"].append(row)
            print("train:", json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if device.startswith("cuda"):
        report["peak_cuda_mib_overall"] = max(
            [r["peak_mib"] or 0 for r in report["generate"] + report["train"]])

    lines = [f"device: {env['device_name']} | torch {env['torch']} (cuda {env['cuda']}) | "
             f"transformers {env['transformers']} | accelerate {env['accelerate']} | "
             f"peft {env['peft']}",
             f"model: SmolLM2-135M architecture, RANDOM weights, {report['model']['parameters']:,} "
             f"params{' (quick: shrunk)' if quick else ''}",
             "generation: Policy.generate, temperature 0.8, top_p 0.95, "
             f"max_new_tokens {max_new}; random weights rarely emit EOS, so rows run to max_new_tokens "
             "(ran_to_max = generated / (rows * max_new))",
             f"{'dtype':9} {'batch':>5} {'prompts':>7} {'prompt_tok':>10} {'gen_tok':>8} "
             f"{'ran_to_max':>10} {'gen_s':>7} {'gen_tok/s':>10} {'peak_MiB':>9}"]
    for r in report["generate"]:
        lines.append(f"{r['dtype']:9} {r['batch']:>5} {r['prompts']:>7} {r['prompt_tokens']:>10} "
                     f"{r['generated_tokens']:>8} {r['ran_to_max_share']:>10} "
                     f"{r['generate_seconds']:>7} {r['generated_tok_per_s']:>10} "
                     f"{str(r['peak_mib']):>9}")
    lines.append(f"training: train_offline, variant aria, LoRA r8 q/k/v, batch 8, synthetic records "
                 f"({per_game}/game x {len(GAMES)} games); s/step excludes the first {warmup} step(s)")
    lines.append(f"{'run':24} {'dtype':9} {'amp':4} {'steps':>5} {'s/step':>8} {'finite':>6} "
                 f"{'peak_MiB':>9}  losses (first..last)")
    for r in report["train"]:
        losses = r["losses"]
        if len(losses) > 5:
            shown = (", ".join(f"{x:.3f}" for x in losses[:3]) + ", ..., "
                     + ", ".join(f"{x:.3f}" for x in losses[-2:]))
        else:
            shown = ", ".join(f"{x:.3f}" for x in losses) or "-"
        lines.append(f"{r['name']:24} {r['dtype']:9} {r['mixed_precision']:4} {r['steps']:>5} "
                     f"{str(r['seconds_per_step_after_warmup']):>8} {str(r['all_finite']):>6} "
                     f"{str(r['peak_mib']):>9}  {shown}")
    if "peak_cuda_mib_overall" in report:
        lines.append(f"peak CUDA memory allocated (max over sections): "
                     f"{report['peak_cuda_mib_overall']} MiB")
    table = "\n".join(lines)
    print("\n" + table, flush=True)
    report["table"] = table
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "gpu_check.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
