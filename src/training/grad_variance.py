"""The paper's central measurement (SPEC 9): how noisy is the policy gradient with aggregated
versus raw rewards, at the same start state and on the same minibatches?

For each of M fixed random minibatches, one forward pass gives the action log-probabilities
and two backward passes give the REINFORCE gradient under each reward. The spread is the mean
squared distance of the M gradients from their mean, accumulated in float64 as
mean ||g||^2 - ||mean g||^2 so full fine-tuning never holds M copies of the model's gradient.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from src import distributed
from src.models import resolve_device
from src.training.reinforce import (LoraSettings, action_log_probs, build_trainable_model,
                                    collate, encode_records, reinforce_loss,
                                    trainable_parameters)

REWARD_FIELDS = {"aggregated": "reward", "raw": "raw_reward"}


@dataclass
class GradVarianceConfig:
    minibatches: int = 8  # M gradients per reward kind
    batch_size: int = 4  # records per minibatch
    seed: int = 0  # fresh LoRA init and the minibatch draw

    def validate(self) -> str | None:
        if self.minibatches < 2 or self.batch_size < 1:
            return "need minibatches >= 2 (a spread needs two gradients) and batch_size >= 1"
        return None


class GradientSpread:
    """Running mean squared distance of vectors from their mean."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.total_sq_norm = 0.0
        self.count = 0

    def add(self, gradient: torch.Tensor) -> None:
        gradient = gradient.cpu().double()
        self.total = gradient.clone() if self.total is None else self.total + gradient
        self.total_sq_norm += float(gradient.square().sum())
        self.count += 1

    @classmethod
    def merge(cls, parts: list["GradientSpread"]) -> "GradientSpread":
        """The spread of every vector added to any of ``parts`` (one per process)."""
        merged = cls()
        for part in parts:
            if part.count:
                merged.total = part.total.clone() if merged.total is None else merged.total + part.total
                merged.total_sq_norm += part.total_sq_norm
                merged.count += part.count
        return merged

    def summary(self) -> dict:
        mean = self.total / self.count
        mean_sq_norm = float(mean.square().sum())
        # Non-negative in exact arithmetic (Jensen); clamp the float64 rounding residue.
        variance = max(0.0, self.total_sq_norm / self.count - mean_sq_norm)
        return {"variance": variance, "mean_gradient_norm": mean_sq_norm ** 0.5}


def gradient_variance(records: list[dict], cfg: GradVarianceConfig, lora: LoraSettings,
                      base: str = "models/base", dtype: str = "float32",
                      device: str = "auto") -> dict:
    began = time.perf_counter()
    model, tokenizer = build_trainable_model(base, dtype, lora, cfg.seed)
    batch_device = resolve_device(device)
    model.to(batch_device).eval()  # no dropout: the gradient of the start state itself
    params = list(trainable_parameters(model).values())
    encoded = encode_records(records, tokenizer)
    draw = random.Random(cfg.seed)
    batch_size = min(cfg.batch_size, len(records))
    spreads = {kind: GradientSpread() for kind in REWARD_FIELDS}
    draws = [draw.sample(range(len(records)), batch_size) for _ in range(cfg.minibatches)]
    for idx in (draws[m] for m in distributed.shard(cfg.minibatches)):  # this process's share
        batch = collate([encoded[i] for i in idx], tokenizer.pad_token_id, batch_device)
        log_probs = action_log_probs(model, batch)
        for kind, field in REWARD_FIELDS.items():
            weights = torch.tensor([float(records[i][field]) for i in idx], device=batch_device)
            grads = torch.autograd.grad(reinforce_loss(log_probs, weights), params,
                                        retain_graph=True)
            spreads[kind].add(torch.cat([g.reshape(-1) for g in grads]))
    spreads = {kind: GradientSpread.merge(distributed.gather_all(spread))
               for kind, spread in spreads.items()}
    result = {kind: spread.summary() for kind, spread in spreads.items()}
    raw = result["raw"]["variance"]
    ratio = result["aggregated"]["variance"] / raw if raw else None
    return {**result, "ratio_aggregated_to_raw": ratio,
            "records": len(records), "minibatches": cfg.minibatches, "batch_size": batch_size,
            "trainable_parameters": sum(p.numel() for p in params),
            "seconds": round(time.perf_counter() - began, 1)}
