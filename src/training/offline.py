"""Offline REINFORCE (docs/method.md §9): one multi-game policy per variant (aria, raw, bc).

Accelerate owns the device and mixed precision, so the same code runs on a laptop CPU and
under ``accelerate launch`` on GPUs (each process takes its share of every minibatch).
The run checkpoints every ``checkpoint_every`` steps and after its last one, and resumes from the
latest checkpoint; with the same seed a resumed run ends with the same weights as an
uninterrupted one. Checkpoints are removed only after the model and the metrics are written.

Baselines: ``game_mean`` subtracts from each weight the mean weight of its game over the
variant's training records (a constant per game, so the gradient stays unbiased): a no-deal tie
(0.5) then weighs about nothing instead of carrying most of the update, and below-average
actions are pushed down. The mean of the aggregated rewards over all action instances equals
the mean of the raw rewards, so aria and raw subtract the same constants. ``bc`` never takes a
baseline: its weights are all 1 by definition, and any baseline would zero them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from src import distributed
from src.curves import write_curve_csvs
from src.engines import Generation
from src.games import GamesConfig
from src.io_utils import atomic_dir
from src.limits import Limits, records_within_limits
from src.paths import RunPaths
from src.policy.chat import tokenised_from_text
from src.policy.models import load_tokenizer
from src.training.checkpoint import TrainingError, load_checkpoint, save_checkpoint
from src.training.records import (GAMES, VARIANTS, NothingToLearn, check_learnable, sample_records,
                                  variant_weights)
from src.training.reinforce import (LoraSettings, NonFinite, build_trainable_model,
                                    encode_records, reinforce_step, trainable_parameters)
from src.training.runs import (BASELINES, batch_order, export_adapter, finish_run, log_step,
                               open_live, run_fingerprint)
from src.training.validation import ValidationConfig, validation_point

MIXED_PRECISION = ("no", "fp16", "bf16")
NOTHING_TO_LEARN = ("fail", "keep_base")
LIVE_METRICS = ("loss", "mean_weight")


@dataclass
class TrainConfig:
    games: list[str]  # one policy learns all of these
    max_records_per_game: int | None  # fixed-seed sample per game (CPU budget); null = all
    epochs: int  # passes over the sampled records
    batch_size: int  # records per optimizer step
    lr: float  # Adam learning rate
    max_grad_norm: float  # gradient-norm clip
    baseline: str  # none | batch_mean (minibatch mean of w) | game_mean (per-game mean of w); never for bc
    variants: list[str]  # the variants dvc.yaml trains per seed (a subset of VARIANTS)
    seeds: list[int]  # training seeds (dvc.yaml runs one train-offline per variant and seed): each draws its own rollouts, LoRA init, record sample and batch order
    checkpoint_every: int  # optimizer steps between checkpoints
    mixed_precision: str  # no | fp16 | bf16 (accelerate; GPU)
    if_nothing_to_learn: str  # fail | keep_base (write the untrained adapter = base)
    lora: LoraSettings
    validation: ValidationConfig  # learning curves

    def validate(self) -> str | None:
        unknown = sorted(set(self.games) - set(GAMES))
        if not self.games or unknown:
            return f"games must be a non-empty subset of {list(GAMES)}; unknown: {unknown}"
        if self.baseline not in BASELINES:
            return f"baseline '{self.baseline}' is not one of {list(BASELINES)}"
        if self.if_nothing_to_learn not in NOTHING_TO_LEARN:
            return f"if_nothing_to_learn '{self.if_nothing_to_learn}' is not one of {list(NOTHING_TO_LEARN)}"
        if self.mixed_precision not in MIXED_PRECISION:
            return (f"mixed_precision '{self.mixed_precision}' is not one of "
                    f"{list(MIXED_PRECISION)} (write \"no\" in quotes: bare no is YAML false)")
        if (min(self.epochs, self.batch_size, self.checkpoint_every) < 1 or self.lr <= 0
                or self.max_grad_norm <= 0):
            return "need epochs, batch_size, checkpoint_every >= 1 and lr, max_grad_norm > 0"
        if self.max_records_per_game is not None and self.max_records_per_game < 1:
            return "max_records_per_game must be >= 1 or null"
        unknown_variants = sorted(set(self.variants) - set(VARIANTS))
        if not self.variants or unknown_variants:
            return f"variants must be a non-empty subset of {list(VARIANTS)}; unknown: {unknown_variants}"
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            return f"seeds must be distinct integers >= 0, at least one; got {list(self.seeds)}"
        return None




def apply_limits(records_by_game: dict[str, list[dict]], limits: Limits | None,
                 base: str) -> tuple[dict[str, list[dict]], dict[str, dict[str, int]]]:
    """Every game's records within the size limits (characters, then tokens with the base
    tokenizer), and the count of the others per game and reason (src.limits)."""
    if limits is None:
        return records_by_game, {}
    tokenizer = load_tokenizer(base)
    kept, left_out = {}, {}
    for game, records in records_by_game.items():
        kept[game], left_out[game] = records_within_limits(records, limits, tokenizer)
    return kept, left_out


def select_training_set(records_by_game: dict[str, list[dict]], variant: str,
                        cfg: TrainConfig, seed: int) -> tuple[list[dict], list[float]]:
    """The variant's records and weights, capped per game by a fixed-seed sample (taken after
    the bc filter, so every variant gets the same budget)."""
    records, weights = [], []
    for game in cfg.games:
        kept, w = variant_weights(records_by_game[game], variant)
        sample = sample_records(list(zip(kept, w)), cfg.max_records_per_game, seed)
        game_weights = [weight for _, weight in sample]
        if cfg.baseline == "game_mean" and variant != "bc" and game_weights:
            mean = sum(game_weights) / len(game_weights)
            game_weights = [weight - mean for weight in game_weights]
        records += [record for record, _ in sample]
        weights += game_weights
    return records, weights


def keep_untrained(variant: str, cfg: TrainConfig, seed: int, dtype: str, paths: RunPaths,
                   reason: str) -> dict:
    """Write the freshly initialised adapter (LoRA B = 0, so it acts exactly as the base model;
    a later ARIA iteration: the previous iteration's policy, unchanged) and empty curves, so the rest of the pipeline runs and the report shows why."""
    import sys

    print(f"warning: {reason}; writing the untrained policy (= base model) to {paths.output}",
          file=sys.stderr)
    model, tokenizer = build_trainable_model(paths.base, dtype, cfg.lora, seed, paths.start)
    export_adapter(model, tokenizer, paths.output)
    with atomic_dir(paths.live / "plots" / "metrics") as tmp:
        for name in LIVE_METRICS:
            (tmp / f"{name}.tsv").write_text(f"step\t{name}\n")
    write_learning_curve(paths.curves, [])
    return {"variant": variant, "seed": seed, "completed": True, "trained": False, "reason": reason,
            "records": 0, "steps": 0}


def write_learning_curve(directory: Path, points: list[dict]) -> None:
    """One csv per validation metric (step, value), the form ``dvc plots`` overlays."""
    names = [k for k in (points[0] if points else {}) if k != "step"]
    write_curve_csvs(directory, [p["step"] for p in points],
                     {"validation": {name: [p[name] for p in points] for name in names}}, x_name="step")


def train_offline(records_by_game: dict[str, list[dict]], variant: str, cfg: TrainConfig,
                  dtype: str = "float32", paths: RunPaths | None = None,
                  stop_after_steps: int | None = None, limits: Limits | None = None,
                  games_cfg: GamesConfig | None = None, start_point: dict | None = None,
                  generation: Generation | None = None, seed: int = 0) -> dict:
    """Train one policy with training seed ``seed``; return metrics (also written to ``paths.metrics``). Records over the
    size ``limits`` are left out and counted. ``stop_after_steps`` ends this call early without
    a final checkpoint (as a kill would), so tests can interrupt and resume. With
    ``cfg.validation.episodes`` > 0 the policy plays the validation episodes (``games_cfg``)
    at the start, every ``validation.every`` steps and at the end; ``start_point`` (the base
    model's point, validate-base) stands for the step-0 point, which is the same for every
    variant, so it is played once for all; ``generation``: the engine that plays them
    (default: the model in memory)."""
    from accelerate import Accelerator

    began = time.perf_counter()
    paths = paths or RunPaths.for_variant(variant, seed)
    records_by_game, left_out = apply_limits(records_by_game, limits, paths.base)
    records, weights = select_training_set(records_by_game, variant, cfg, seed)
    try:
        check_learnable(weights, variant, cfg.baseline)
    except NothingToLearn as reason:
        if cfg.if_nothing_to_learn == "fail":
            raise
        metrics = {"variant": variant, "trained": False}
        if distributed.is_main():
            metrics = finish_run({**keep_untrained(variant, cfg, seed, dtype, paths, str(reason)),
                                  "records_left_out": left_out}, paths.metrics, paths.checkpoints)
        distributed.barrier()
        return metrics
    distributed.rank()  # processes talk over gloo without CUDA (before Accelerator picks)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    model, tokenizer = build_trainable_model(paths.base, dtype, cfg.lora, seed, paths.start)
    distributed.seed_per_process(seed)  # dropout masks: independent per process
    encoded = encode_records(records, tokenizer)
    optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=cfg.lr)
    fingerprint = run_fingerprint(
        [cfg, variant, seed, dtype, paths.base, *([str(paths.start)] if paths.start else []),
         [(r["episode_id"], r["player"], r["turn"], w) for r, w in zip(records, weights)]],
        [Path(paths.base), *([Path(paths.start)] if paths.start is not None else [])])
    state = load_checkpoint(paths.checkpoints, fingerprint, model, optimizer, accelerator)
    resumed_from = state.step
    model, optimizer = accelerator.prepare(model, optimizer)
    # without accelerate's autocast wrapper: validation plays in the model's dtype, as
    # evaluation does (reinforce_step enters accelerator.autocast itself)
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    live = open_live(paths.live, state.history) if accelerator.is_main_process else None
    total_steps = cfg.epochs * math.ceil(len(records) / cfg.batch_size)
    validating = cfg.validation.episodes > 0 and accelerator.is_main_process
    if validating and start_point:
        wanted = {"step", "mean_reward"} | {f"{g}_{m}" for g in cfg.games for m in ("reward", "rate")}
        if set(start_point) != wanted or start_point["step"] != 0:
            raise TrainingError(f"the step-0 validation point has keys {sorted(start_point)}, not "
                                f"those of train.games at step 0: rerun validate-base")

    def validate_now() -> None:
        if validating and all(p["step"] != state.step for p in state.validation):
            state.validation.append(dict(start_point) if state.step == 0 and start_point else
                                    validation_point(unwrapped, tokenizer, cfg.games, games_cfg,
                                                     cfg.validation, state.step,
                                                     generation=generation))

    if state.step == 0:  # a resumed run's points so far came with its checkpoint
        validate_now()
    train_began = time.perf_counter()
    while state.step < total_steps:
        if stop_after_steps is not None and state.step - resumed_from >= stop_after_steps:
            return {"variant": variant, "steps": state.step, "completed": False}
        idx = batch_order(len(records), cfg.batch_size, seed, state.step)
        batch_weights = torch.tensor([weights[i] for i in idx], device=accelerator.device)
        try:
            loss = reinforce_step(model, optimizer, accelerator, [encoded[i] for i in idx],
                                  batch_weights, tokenizer.pad_token_id, cfg.baseline,
                                  cfg.max_grad_norm)
        except NonFinite as bad:
            kept = state.step - state.step % cfg.checkpoint_every
            raise TrainingError(
                f"variant '{variant}': {bad} at step {state.step + 1}; stopped. "
                + (f"The last good checkpoint (step {kept}) is kept in {paths.checkpoints}"
                   if kept else "No checkpoint was written yet")) from None
        entry = {"loss": loss, "mean_weight": batch_weights.mean().item()}  # w before any baseline
        state.history.append(entry)
        state.step += 1
        if live is not None:
            log_step(live, entry)
        if state.step % cfg.validation.every == 0 or state.step == total_steps:
            validate_now()
        if state.step % cfg.checkpoint_every == 0 or state.step == total_steps:
            save_checkpoint(paths.checkpoints, state, fingerprint, unwrapped, optimizer,
                            accelerator)
    train_seconds = time.perf_counter() - train_began
    if accelerator.is_main_process:
        export_adapter(unwrapped, tokenizer, paths.output)
        live.end()
        write_learning_curve(paths.curves, state.validation)  # empty without validation
    metrics = {
        "variant": variant, "seed": seed, "completed": True, "trained": True, "records": len(records),
        "records_tokenised_from_text": tokenised_from_text(records),
        "records_left_out": left_out,
        "records_per_game": {g: sum(r["game"] == g for r in records) for g in cfg.games},
        "steps": total_steps, "resumed_from_step": resumed_from,
        "final_loss": state.history[-1]["loss"],
        "baseline": "none" if variant == "bc" else cfg.baseline,
        "validation": state.validation,
        "seconds": round(time.perf_counter() - began, 1),
        "seconds_per_step": round(train_seconds / max(1, total_steps - resumed_from), 2),
        "trainable_parameters": sum(p.numel() for p in trainable_parameters(unwrapped).values()),
    }
    if not accelerator.is_main_process:
        return metrics
    return finish_run(metrics, paths.metrics, paths.checkpoints)
