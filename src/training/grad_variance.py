"""The paper's central measurement (docs/method.md §9, §13): how noisy is the policy gradient with
aggregated versus raw rewards, at the same start state?

The REINFORCE gradient of a minibatch is the mean of w_j * g_j over its records, where g_j is
the gradient of record j's action log-probability (sum over action tokens). Aggregated and raw
rewards share the g_j and differ only in w, so one pass of per-record gradients gives both
exactly: a minibatch of B drawn without replacement from N records has total variance
(N - B) / (N - 1) * sigma^2 / B, with sigma^2 = mean_j ||w_j g_j - m||^2 and m = mean_j w_j g_j.
B cancels in the aggregated/raw ratio sigma^2_agg / sigma^2_raw.

sigma^2 is a quadratic form in w with the Gram matrix G = g g^T, and a bootstrap resample only
reweights records (multiplicities c_j), so the interval of the ratio (whole episodes resampled,
since an episode's records are correlated) costs N x N arithmetic per resample, no gradients.
The resamples are stratified: episodes with a rewarded record (non-zero raw weight) and
episodes without are drawn separately, each stratum keeping its size, so every resample has as
many rewarded episodes as the sample and a defined ratio (an unstratified resample without one
has raw sigma^2 = 0 and no ratio; dropping those biases the interval).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from src.paths import BASE_MODEL
from src.policy.chat import tokenised_from_text
from src.policy.models import resolve_device
from src.training.records import sample_records
from src.training.reinforce import (Encoded, LoraSettings, action_log_probs,
                                    build_trainable_model, collate, encode_records,
                                    trainable_parameters)

REWARD_FIELDS = {"aggregated": "reward", "raw": "raw_reward"}
BASELINE_NOTE = ("constant baseline b = mean of that kind's weights over the sampled records "
                 "(recomputed in every bootstrap resample); over all of a game's instances the "
                 "aggregated and raw means are equal, over a sample they differ slightly")


@dataclass
class GradVarianceConfig:
    records: int  # per-record gradients of at most this many records per game (fixed-seed sample)
    batch_size: int  # minibatch size B the minibatch-gradient variance is reported at (train.batch_size)
    rows_per_pass: int  # records sharing one forward/backward pass (memory vs speed)
    bootstrap: int  # episode resamples for the 95 % interval of each ratio
    seed: int  # fresh LoRA init (train.lora), the record sample and the resamples
    autocast: str  # "no" | bf16: the forward/backward under bf16 autocast (CPU with bf16 units, GPU)

    def validate(self) -> str | None:
        if self.records < 2 or min(self.batch_size, self.rows_per_pass, self.bootstrap) < 1:
            return "need records >= 2 and batch_size, rows_per_pass, bootstrap >= 1"
        if self.autocast not in AUTOCAST:
            return f"autocast '{self.autocast}' is not one of {list(AUTOCAST)} (quote \"no\")"
        return None


AUTOCAST = {"no": None, "bf16": torch.bfloat16}


# -- per-record gradients ------------------------------------------------------------------
class LinearRowGradients:
    """Per-row gradients of the trainable weights and biases of ``nn.Linear`` layers (LoRA's
    A and B) from ONE backward pass of the summed log-probabilities: a linear layer's weight
    gradient is the sum over positions of output-gradient x input, and rows of a batch never
    interact, so keeping the sum per row gives each record its own gradient."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter]):
        owner = {}
        for module in model.modules():
            if isinstance(module, nn.Linear):
                for attr in ("weight", "bias"):
                    p = getattr(module, attr)
                    if p is not None and p.requires_grad:
                        owner[id(p)] = (module, attr)
        self.supported = all(id(p) in owner for p in params)
        self.slots = [owner.get(id(p)) for p in params]
        self.inputs: dict[nn.Module, torch.Tensor] = {}
        self.grads: dict[nn.Module, torch.Tensor] = {}
        self.handles = ([m.register_forward_hook(self._forward)
                         for m in {slot[0] for slot in self.slots}] if self.supported else [])

    def _forward(self, module, inputs, output) -> None:
        if module in self.inputs:
            raise RuntimeError("a linear layer ran twice in one pass; per-row gradients "
                               "from hooks assume one call per layer")
        self.inputs[module] = inputs[0].detach()
        output.register_hook(lambda grad: self.grads.__setitem__(module, grad.detach()))

    def rows(self, rows: int) -> torch.Tensor:
        """[rows, parameters] float32, in the order of ``params``; clears the captured state."""
        parts = []
        for module, attr in self.slots:
            gy = self.grads[module].float().reshape(rows, -1, module.out_features)
            if attr == "bias":
                parts.append(gy.sum(1))
            else:
                x = self.inputs[module].float().reshape(rows, -1, module.in_features)
                parts.append(torch.einsum("bto,bti->boi", gy, x).reshape(rows, -1))
        self.inputs.clear()
        self.grads.clear()
        return torch.cat(parts, dim=1)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def per_record_gradients(model: nn.Module, encoded: list[Encoded], pad_id: int,
                         rows_per_pass: int = 8, device: torch.device | str = "cpu",
                         use_hooks: bool | None = None, autocast: str = "no") -> torch.Tensor:
    """[records, trainable parameters] float32: row j is the gradient of record j's summed
    action log-probability. LoRA (every trainable tensor in a linear layer) takes
    ``rows_per_pass`` records per forward and backward; otherwise (full fine-tuning, or
    ``use_hooks=False``) one record per pass. Records are batched by length to cut padding.
    ``autocast="bf16"`` runs the passes under bf16 autocast (gradients are kept in float32)."""
    params = list(trainable_parameters(model).values())
    capture = LinearRowGradients(model, params) if use_hooks is not False else None
    if use_hooks and not capture.supported:
        raise ValueError("per-row hooks need every trainable parameter in an nn.Linear")
    if capture is not None and not capture.supported:
        capture.close()
        capture = None
    step = rows_per_pass if capture is not None else 1
    order = sorted(range(len(encoded)), key=lambda j: len(encoded[j][0]))
    out = torch.empty(len(encoded), sum(p.numel() for p in params), dtype=torch.float32)
    try:
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            with torch.autocast(torch.device(device).type, dtype=AUTOCAST[autocast] or torch.bfloat16,
                                enabled=AUTOCAST[autocast] is not None):
                log_probs = action_log_probs(model, collate([encoded[j] for j in idx], pad_id,
                                                            device))
            if capture is not None:
                log_probs.sum().backward(inputs=params)
                out[idx] = capture.rows(len(idx)).cpu()
            else:
                grads = torch.autograd.grad(log_probs.sum(), params)
                out[idx[0]] = torch.cat([g.reshape(-1) for g in grads]).float().cpu()
    finally:
        if capture is not None:
            capture.close()
        for p in params:
            p.grad = None
    return out


def gram_matrix(gradients: torch.Tensor, chunk: int = 1 << 20) -> np.ndarray:
    """G = g g^T in float64, accumulated over column chunks (no float64 copy of all of g)."""
    gram = torch.zeros(gradients.shape[0], gradients.shape[0], dtype=torch.float64)
    for start in range(0, gradients.shape[1], chunk):
        block = gradients[:, start:start + chunk].double()
        gram += block @ block.T
    return gram.numpy()


# -- the spread as a quadratic form, and its bootstrap ---------------------------------------
def weighted_spread(gram: np.ndarray, weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sigma^2 = (1/n) sum_j c_j ||w_j g_j - m||^2 with m = (1/n) sum_j c_j w_j g_j and
    n = sum_j c_j, for each row of ``counts`` [R, N] (weights [N] or one row per resample):
    (1/n) sum_j c_j w_j^2 G_jj - (c w)^T G (c w) / n^2."""
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), counts.shape)
    n = counts.sum(axis=1)
    scaled = counts * weights
    first = (scaled * weights * np.diag(gram)).sum(axis=1) / n
    second = ((scaled @ gram) * scaled).sum(axis=1) / n ** 2
    return np.maximum(first - second, 0.0)  # >= 0 exactly; clamp the rounding residue


def centred(weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """w - b per resample, b the (multiplicity-weighted) mean of w over the resampled records."""
    counts = np.atleast_2d(counts)
    return weights[None, :] - ((counts * weights).sum(axis=1) / counts.sum(axis=1))[:, None]


def episode_resamples(episode_ids: list[str], resamples: int, seed: int,
                      rewarded: np.ndarray | None = None) -> np.ndarray:
    """[resamples, records] multiplicities: episodes drawn with replacement, each draw bringing
    all of that episode's sampled records (a cluster bootstrap). With ``rewarded`` (per
    record), episodes holding a rewarded record and the others are drawn apart, each stratum
    as many times as it has episodes."""
    labels, record_episode = np.unique(episode_ids, return_inverse=True)
    stratum = np.zeros(len(labels), dtype=bool)
    if rewarded is not None:
        stratum[record_episode[np.asarray(rewarded, dtype=bool)]] = True
    rng = np.random.default_rng(seed)
    per_episode = np.zeros((resamples, len(labels)), dtype=np.int64)
    for members in (np.flatnonzero(stratum), np.flatnonzero(~stratum)):
        if len(members):
            draws = members[rng.integers(0, len(members), size=(resamples, len(members)))]
            for row, drawn in enumerate(draws):
                per_episode[row] += np.bincount(drawn, minlength=len(labels))
    return per_episode[:, record_episode].astype(np.float64)


def minibatch_variance(sigma2: float, records: int, batch_size: int) -> float:
    """Total variance of the mean of B records drawn without replacement from N."""
    b = min(batch_size, records)
    return (records - b) / (records - 1) * sigma2 / b


def ratio_with_interval(gram: np.ndarray, weights: dict[str, np.ndarray], counts: np.ndarray,
                        baseline: bool, batch_size: int) -> dict:
    """sigma^2 per kind, the minibatch variance at ``batch_size``, the aggregated/raw ratio and
    its percentile 95 % interval over the resamples in ``counts`` (resamples where raw sigma^2
    is 0 have no ratio and are counted, not used)."""
    ones = np.ones((1, gram.shape[0]))
    n = gram.shape[0]
    point, boot = {}, {}
    for kind, w in weights.items():
        point[kind] = float(weighted_spread(gram, centred(w, ones) if baseline else w, ones)[0])
        boot[kind] = weighted_spread(gram, centred(w, counts) if baseline else w, counts)
    ratio = point["aggregated"] / point["raw"] if point["raw"] > 0 else None
    defined = boot["raw"] > 0
    ratios = boot["aggregated"][defined] / boot["raw"][defined]
    interval = ([float(q) for q in np.percentile(ratios, [2.5, 97.5])]
                if ratio is not None and len(ratios) else None)
    result = {"sigma2": point,
              "minibatch_variance": {k: minibatch_variance(v, n, batch_size)
                                     for k, v in point.items()},
              "ratio": ratio, "interval": interval,
              "resamples_without_ratio": int((~defined).sum()),
              "share_without_ratio": round(float((~defined).mean()), 4)}
    if baseline:
        result["b"] = {kind: float(w.mean()) for kind, w in weights.items()}
    return result


# -- the stage -------------------------------------------------------------------------------
def gradient_variance(records: list[dict], cfg: GradVarianceConfig, lora: LoraSettings,
                      base: str = BASE_MODEL, dtype: str = "float32",
                      device: str = "auto") -> dict:
    """Metrics for one game's records: see the module docstring."""
    began = time.perf_counter()
    sample = sample_records(records, cfg.records, cfg.seed)
    weights = {kind: np.array([float(r[field]) for r in sample])
               for kind, field in REWARD_FIELDS.items()}
    episodes = [r["episode_id"] for r in sample]
    rewarded = weights["raw"] != 0
    result = {"records": len(sample), "episodes": len(set(episodes)),
              "records_with_nonzero_weight": int(rewarded.sum()),
              "episodes_with_nonzero_weight": len({e for e, r in zip(episodes, rewarded) if r}),
              "autocast": cfg.autocast, "bootstrap": "episodes, stratified by rewarded or not",
              "records_tokenised_from_text": tokenised_from_text(sample),
              "batch_size": min(cfg.batch_size, len(sample)), "bootstrap_resamples": cfg.bootstrap,
              "baseline": BASELINE_NOTE}
    if len(sample) < 2 or np.ptp(weights["raw"]) == 0:
        value = weights["raw"][0] if len(sample) else None
        note = (f"no reward signal: every sampled raw reward is {value}, so aggregated rewards "
                "equal them and the ratio is undefined" if len(sample) else "no records")
        return {**result, "trainable_parameters": None, "no_baseline": None,
                "constant_baseline": None, "note": note,
                "seconds": round(time.perf_counter() - began, 1)}
    model, tokenizer = build_trainable_model(base, dtype, lora, cfg.seed)
    batch_device = resolve_device(device)
    model.to(batch_device).eval()  # no dropout: the gradient of the start state itself
    gradients_began = time.perf_counter()
    gradients = per_record_gradients(model, encode_records(sample, tokenizer),
                                     tokenizer.pad_token_id, cfg.rows_per_pass, batch_device,
                                     autocast=cfg.autocast)
    gradient_seconds = time.perf_counter() - gradients_began
    gram = gram_matrix(gradients)
    counts = episode_resamples(episodes, cfg.bootstrap, cfg.seed, rewarded)
    return {**result, "trainable_parameters": gradients.shape[1],
            "no_baseline": ratio_with_interval(gram, weights, counts, False, cfg.batch_size),
            "constant_baseline": ratio_with_interval(gram, weights, counts, True,
                                                     cfg.batch_size),
            "seconds_per_record": round(gradient_seconds / len(sample), 3),
            "seconds": round(time.perf_counter() - began, 1)}
