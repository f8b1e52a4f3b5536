"""Pointwise reward model (docs/method.md §9): (messages, action) -> a score in [0, 1], trained
on the aggregated rewards with the paper's weighted MSE, evaluated on held-out episodes.

Backbones (``rm.backbone``):
- ``embedder_mlp`` (default, CPU): the frozen sentence embedder encodes, apart, the action, the
  system message (rules and private values, which a window of recent messages loses after the
  first turn) and the last few other messages (most recent first, so the embedder's length cut
  drops the oldest); a small MLP maps the three embeddings to a score. With ``residual`` the
  MLP predicts the deviation (in logits) from its game's training mean, starting at exactly
  that mean (zero-initialised last layer): predicting each game's mean is the bar to clear, and
  the model begins on it. The number of epochs is chosen on held-out episodes of the training
  records (0 keeps the game means), then the model is refitted on all of them.
- ``lm_lora``: the policy LM (LoRA, or full fine-tuning) with a linear head on the hidden state
  of the last token, reading the tokens the policy is trained on (``ChatFormat.encode_record``).
One model serves every game: the prompt wording tells games and roles apart.

The online stage retrains with :func:`train_reward_model` and scores with
:meth:`RewardModel.score`; the train-rm stage calls :func:`fit_and_evaluate`.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from src.distributed import batch_shard, data_parallel
from src.evaluation.stats import paired_bootstrap
from src.intention.embedder import embed, load_embedder
from src.io_utils import InputError, atomic_dir, load_tensors, read_json, write_json
from src.paths import BASE_MODEL
from src.policy.models import load_model, resolve_device, sort_adapter_config
from src.policy.chat import ChatFormat
from src.training.records import GAMES
from src.training.reinforce import LoraSettings, build_trainable_model, collate

BACKBONES = ("embedder_mlp", "lm_lora")
META_FILE = "reward_model.json"


@dataclass
class FitSettings:
    epochs: int  # passes over the training records
    batch_size: int  # records per optimizer step
    lr: float  # Adam learning rate


@dataclass
class MLPSettings(FitSettings):
    embedder: str  # sentence-transformers model for action and context
    context_messages: int  # the last non-system messages embedded as the recent context
    hidden_units: int  # width of the MLP's hidden layer
    residual: bool  # predict the deviation from the game's training mean
    validation_fraction: float  # episodes held out of training to choose the epochs; 0 = all epochs


@dataclass
class LMSettings(FitSettings):
    epochs: int
    batch_size: int
    lr: float
    lora: LoraSettings


@dataclass
class RMConfig:
    backbone: str  # embedder_mlp | lm_lora
    games: list[str]  # one RM over these games
    holdout_fraction: float  # share of episodes held out for the metrics
    seed: int  # split, init and batch order
    max_grad_norm: float  # gradient-norm clip
    mlp: MLPSettings
    lm: LMSettings

    def validate(self) -> str | None:
        if self.backbone not in BACKBONES:
            return f"backbone '{self.backbone}' is not one of {list(BACKBONES)}"
        if not self.games or set(self.games) - set(GAMES):
            return f"games must be a non-empty subset of {list(GAMES)}"
        if not 0 < self.holdout_fraction < 1:
            return "holdout_fraction must be in (0, 1)"
        fit = self.mlp if self.backbone == "embedder_mlp" else self.lm
        if min(fit.epochs, fit.batch_size) < 1 or fit.lr <= 0 or self.mlp.context_messages < 1:
            return "need epochs, batch_size, context_messages >= 1 and lr > 0"
        if not 0 <= self.mlp.validation_fraction < 1:
            return "mlp.validation_fraction must be in [0, 1)"
        return None


# -- the objective and the metrics ---------------------------------------------------------
def rm_weights(targets: torch.Tensor) -> torch.Tensor:
    """docs/method.md §9: 2.0 where target < 0.01 or > 0.8; 0.5 within 0.05 of 0.5; else 1.0."""
    weights = torch.ones_like(targets)
    weights[(targets < 0.01) | (targets > 0.8)] = 2.0
    weights[(targets >= 0.45) & (targets <= 0.55)] = 0.5
    return weights


def weighted_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (rm_weights(targets) * (predictions - targets) ** 2).mean()


def spearman(predictions, targets) -> float | None:
    """Rank correlation; None when either side is constant (undefined)."""
    if np.ptp(predictions) == 0 or np.ptp(targets) == 0:
        return None
    return float(spearmanr(predictions, targets).statistic)


def pairwise_accuracy(predictions, targets) -> float | None:
    """Share of pairs with different targets that the predictions order the same way (a tied
    prediction counts half); None when every target is equal."""
    p, t = np.asarray(predictions, dtype=float), np.asarray(targets, dtype=float)
    correct = pairs = 0.0
    for i in range(len(t) - 1):
        target_sign, pred_sign = np.sign(t[i + 1:] - t[i]), np.sign(p[i + 1:] - p[i])
        ordered = target_sign != 0
        pairs += ordered.sum()
        agree = pred_sign[ordered] == target_sign[ordered]
        correct += agree.sum() + 0.5 * (pred_sign[ordered] == 0).sum()
    return float(correct / pairs) if pairs else None


# -- backbones -----------------------------------------------------------------------------
def system_text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] == "system")


def context_text(messages: list[dict], last: int) -> str:
    recent = [m for m in messages if m["role"] != "system"][-last:]
    return "\n".join(f"{m['role']}: {m['content']}" for m in reversed(recent))


def embed_texts(texts: list[str], embedder: str) -> np.ndarray:
    """Embed each distinct text once, in one call (contexts repeat across a game's actions)."""
    unique = list(dict.fromkeys(texts))
    index = {text: i for i, text in enumerate(unique)}
    return embed(unique, embedder)[[index[text] for text in texts]]


def game_index(game: str | None) -> int:
    """Position in GAMES; any other (or no) game maps to one extra slot, the overall mean."""
    return GAMES.index(game) if game in GAMES else len(GAMES)


def logit(p: float, eps: float = 1e-3) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


class EmbedderMLP(nn.Module):
    """Features: [action, system message, recent messages] embeddings and the game's index;
    score = sigmoid(MLP(embeddings) + offset[game]), the offset the logit of the game's
    training mean (residual) or 0."""
    kind = "embedder_mlp"

    def __init__(self, settings: MLPSettings, embedding_dim: int):
        super().__init__()
        self.settings, self.embedding_dim = settings, embedding_dim
        self.net = nn.Sequential(nn.Linear(3 * embedding_dim, settings.hidden_units), nn.ReLU(),
                                 nn.Linear(settings.hidden_units, 1))
        self.register_buffer("offsets", torch.zeros(len(GAMES) + 1))
        if settings.residual:  # start exactly on the game means
            nn.init.zeros_(self.net[2].weight)
            nn.init.zeros_(self.net[2].bias)

    @classmethod
    def create(cls, cfg: RMConfig, base: str = BASE_MODEL, dtype: str = "float32",
               device: str = "auto") -> "EmbedderMLP":
        dim = load_embedder(cfg.mlp.embedder).get_embedding_dimension()
        return cls(cfg.mlp, dim).to(resolve_device(device))

    def set_game_means(self, games: list[str], targets: torch.Tensor) -> dict[str, float]:
        """Offsets from the training targets (residual only); returns the means per game."""
        means = {g: float(targets[[i for i, x in enumerate(games) if x == g]].mean())
                 for g in dict.fromkeys(games)}
        if self.settings.residual:
            overall = float(targets.mean())
            self.offsets.copy_(torch.tensor([logit(means.get(g, overall)) for g in GAMES]
                                            + [logit(overall)]))
        return means

    def featurize(self, records: list[dict]) -> torch.Tensor:
        games = [r.get("game") for r in records]
        if None in games and self.settings.residual:
            raise ValueError("a residual reward model scores per game: give each action its game")
        n = len(records)
        texts = ([r["action"] for r in records] + [system_text(r["messages"]) for r in records]
                 + [context_text(r["messages"], self.settings.context_messages) for r in records])
        vectors = embed_texts(texts, self.settings.embedder)
        index = np.array([[game_index(g)] for g in games], dtype=np.float32)
        return torch.from_numpy(np.concatenate(
            [vectors[:n], vectors[n:2 * n], vectors[2 * n:], index], axis=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.to(self.offsets.device)
        offset = self.offsets[features[:, -1].long()]
        return torch.sigmoid(self.net(features[:, :-1]).squeeze(-1) + offset)

    def save(self, folder: Path) -> dict:
        torch.save(self.state_dict(), folder / "mlp.pt")
        return {"settings": asdict(self.settings), "embedding_dim": self.embedding_dim}

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str, base: str = BASE_MODEL) -> "EmbedderMLP":
        scorer = cls(MLPSettings(**meta["settings"]), meta["embedding_dim"])
        scorer.load_state_dict(load_tensors(folder / "mlp.pt"))
        return scorer.to(resolve_device(device))


class LMScorer(nn.Module):
    kind = "lm_lora"

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.encoder = ChatFormat(tokenizer)
        self.head = nn.Linear(model.config.hidden_size, 1)

    @classmethod
    def create(cls, cfg: RMConfig, base: str = BASE_MODEL, dtype: str = "float32",
               device: str = "auto") -> "LMScorer":
        model, tokenizer = build_trainable_model(base, dtype, cfg.lm.lora, cfg.seed)
        return cls(model, tokenizer).to(resolve_device(device))

    def featurize(self, records: list[dict]) -> list:
        """The tokens the policy is trained on (the prompt names the game, so no game index)."""
        return list(map(self.encoder.encode_record, records))

    def forward(self, encoded: list) -> torch.Tensor:
        batch = collate(encoded, self.tokenizer.pad_token_id, self.head.weight.device)
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         position_ids=batch["position_ids"], logits_to_keep=1,
                         output_hidden_states=True, use_cache=False)
        return torch.sigmoid(self.head(out.hidden_states[-1][:, -1].float())).squeeze(-1)

    def save(self, folder: Path) -> dict:
        self.model.save_pretrained(folder)  # a LoRA adapter on models/base, or a full model
        self.tokenizer.save_pretrained(folder)
        sort_adapter_config(folder)
        torch.save(self.head.state_dict(), folder / "head.pt")
        return {"dtype": str(self.model.dtype).removeprefix("torch.")}

    @classmethod
    def load(cls, folder: Path, meta: dict, device: str, base: str = BASE_MODEL) -> "LMScorer":
        model, tokenizer = load_model(folder, meta["dtype"], device, base)  # merges a LoRA adapter
        scorer = cls(model, tokenizer)
        scorer.head.load_state_dict(load_tensors(folder / "head.pt"))
        return scorer.to(resolve_device(device))


SCORERS = {scorer.kind: scorer for scorer in (EmbedderMLP, LMScorer)}


def take(inputs, idx: list[int]):
    return inputs[idx] if torch.is_tensor(inputs) else [inputs[i] for i in idx]


class RewardModel:
    """A trained scorer plus the file format around it (``models/rm/``)."""

    def __init__(self, scorer: nn.Module):
        self.scorer = scorer.eval()
        self.training: dict = {}  # how train_reward_model chose the epochs

    @classmethod
    def load(cls, path: Path | str, device: str = "auto", base: str = BASE_MODEL) -> "RewardModel":
        """The RM saved in ``path``; an lm_lora adapter goes on ``base``."""
        path = Path(path)
        meta = read_json(path / META_FILE)
        return cls(SCORERS[meta["backbone"]].load(path, meta, device, base))

    def save(self, path: Path | str) -> None:
        with atomic_dir(path) as tmp:
            meta = self.scorer.save(tmp)
            write_json(tmp / META_FILE, {"backbone": self.scorer.kind, **meta})

    @torch.no_grad()
    def score(self, records: list[dict], batch_size: int = 64) -> list[float]:
        """One score per {messages, action} record (with its ``game``, and the ``truncated``
        and ``action_ids`` of the policy turn when it has them)."""
        inputs = self.scorer.featurize(records)
        scores: list[float] = []
        for start in range(0, len(records), batch_size):
            idx = list(range(start, min(start + batch_size, len(records))))
            scores += self.scorer(take(inputs, idx)).tolist()
        return scores


# -- training ------------------------------------------------------------------------------
def fit_scorer(scorer: nn.Module, inputs, targets: torch.Tensor, epochs: int, fit: FitSettings,
               cfg: RMConfig, check: tuple | None = None) -> list[float]:
    """Adam on the weighted MSE for ``epochs`` passes (batch order from cfg.seed). With
    ``check`` = (inputs, targets): its weighted MSE before training and after every epoch."""
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=fit.lr)
    order = list(range(len(targets)))
    shuffle = random.Random(cfg.seed)

    def checked() -> list[float]:
        if check is None:
            return []
        scorer.eval()
        with torch.no_grad():
            predictions = scorer(check[0])
        scorer.train()
        return [float(weighted_mse(predictions, check[1].to(predictions.device)))]

    curve = checked()
    scorer.train()
    trained = data_parallel(scorer)  # gradients averaged over processes (itself in one)
    for _ in range(epochs):
        shuffle.shuffle(order)
        for start in range(0, len(order), fit.batch_size):
            idx, scale = batch_shard(order[start:start + fit.batch_size])  # this process's rows
            predictions = trained(take(inputs, idx))
            loss = weighted_mse(predictions, targets[idx].to(predictions.device)) * scale
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
        curve += checked()
    return curve


def train_reward_model(records: list[dict], cfg: RMConfig, base: str = BASE_MODEL,
                       dtype: str = "float32", device: str = "auto") -> RewardModel:
    """Fit a fresh reward model on ``records`` (game, episode_id, messages, action, reward).
    embedder_mlp with validation_fraction > 0: the epochs (0 = the game means alone) are those
    with the lowest weighted MSE on held-out episodes of ``records``, then the model is
    refitted on all of them (the embeddings are computed once)."""
    if not records:
        raise InputError("reward model: no records to train on")

    def fresh() -> nn.Module:
        torch.manual_seed(cfg.seed)
        return SCORERS[cfg.backbone].create(cfg, base, dtype, device)

    scorer = fresh()
    games = [r["game"] for r in records]
    inputs = scorer.featurize(records)
    targets = torch.tensor([float(r["reward"]) for r in records])
    fit = cfg.mlp if cfg.backbone == "embedder_mlp" else cfg.lm
    epochs, curve = fit.epochs, None
    episodes = {(r["game"], r["episode_id"]) for r in records}
    if isinstance(scorer, EmbedderMLP) and cfg.mlp.validation_fraction > 0 and len(episodes) > 1:
        mask = holdout_mask(records, cfg.mlp.validation_fraction, cfg.seed)
        fit_part = [i for i, held in enumerate(mask) if not held]
        check_part = [i for i, held in enumerate(mask) if held]
        scorer.set_game_means([games[i] for i in fit_part], targets[fit_part])
        curve = fit_scorer(scorer, take(inputs, fit_part), targets[fit_part], fit.epochs, fit,
                           cfg, check=(take(inputs, check_part), targets[check_part]))
        epochs = int(np.argmin(curve))
        scorer = fresh()
    if isinstance(scorer, EmbedderMLP):
        scorer.set_game_means(games, targets)
    fit_scorer(scorer, inputs, targets, epochs, fit, cfg)
    rm = RewardModel(scorer)
    rm.training = {"epochs": epochs, "validation_weighted_mse": curve}
    return rm


def game_means(records: list[dict]) -> dict[str, float]:
    by_game: dict[str, list[float]] = {}
    for r in records:
        by_game.setdefault(r["game"], []).append(float(r["reward"]))
    return {game: sum(v) / len(v) for game, v in by_game.items()}


def prediction_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict:
    p, t = torch.from_numpy(predictions).float(), torch.from_numpy(targets).float()
    return {"mse": float(((p - t) ** 2).mean()), "weighted_mse": float(weighted_mse(p, t)),
            "spearman": spearman(predictions, targets),
            "pairwise_accuracy": pairwise_accuracy(predictions, targets)}


def evaluate_reward_model(rm: RewardModel, records: list[dict],
                          train_records: list[dict] | None = None) -> dict:
    """MSE, weighted MSE, Spearman and pairwise accuracy on ``records``; with ``train_records``
    also those of the bar to clear, predicting each game's training mean, per game too."""
    games = [r["game"] for r in records]
    predictions = np.array(rm.score(records))
    targets = np.array([float(r["reward"]) for r in records])
    metrics = {"records": len(records), **prediction_metrics(predictions, targets)}
    if train_records is None:
        return metrics
    means = game_means(train_records)
    overall = sum(float(r["reward"]) for r in train_records) / len(train_records)
    baseline = np.array([means.get(g, overall) for g in games])
    metrics["game_mean_baseline"] = prediction_metrics(baseline, targets)
    metrics["per_game"] = {}
    for game in dict.fromkeys(games):
        rows = np.array([g == game for g in games])
        metrics["per_game"][game] = {
            "records": int(rows.sum()),
            "mse": float(((predictions[rows] - targets[rows]) ** 2).mean()),
            "game_mean_mse": float(((baseline[rows] - targets[rows]) ** 2).mean())}
    metrics["mse_of_train_mean"] = float(((targets - overall) ** 2).mean())
    # The bar is cleared only if the paired difference in squared error is below 0 with its
    # whole interval (episodes resampled: records of one episode are correlated).
    paired = paired_bootstrap(list((predictions - targets) ** 2), list((baseline - targets) ** 2),
                              clusters=[f"{r['game']}/{r['episode_id']}" for r in records])
    metrics["paired_squared_error"] = {**paired, "episodes": paired.pop("clusters")}
    metrics["beats_game_mean_baseline"] = paired["high"] < 0
    return metrics


def holdout_mask(records: list[dict], holdout_fraction: float, seed: int) -> list[bool]:
    """True for the records of a fixed-seed share of whole episodes, so no episode leaks its
    rewards across the split."""
    episodes = sorted({(r["game"], r["episode_id"]) for r in records})
    if len(episodes) < 2:
        raise InputError("reward model: need at least two episodes to hold one out")
    random.Random(seed).shuffle(episodes)
    held = set(episodes[:max(1, round(len(episodes) * holdout_fraction))])
    return [(r["game"], r["episode_id"]) in held for r in records]


def split_by_episode(records: list[dict], holdout_fraction: float,
                     seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out), whole episodes on one side."""
    mask = holdout_mask(records, holdout_fraction, seed)
    return ([r for r, h in zip(records, mask) if not h], [r for r, h in zip(records, mask) if h])


def fit_and_evaluate(records: list[dict], cfg: RMConfig, base: str = BASE_MODEL,
                     dtype: str = "float32", device: str = "auto") -> tuple[RewardModel, dict]:
    """The train-rm stage: train on the training episodes, report held-out metrics beside
    those of predicting each game's training mean (the bar a useful model must clear)."""
    began = time.perf_counter()
    train, held_out = split_by_episode(records, cfg.holdout_fraction, cfg.seed)
    rm = train_reward_model(train, cfg, base, dtype, device)
    metrics = evaluate_reward_model(rm, held_out, train)
    return rm, {"backbone": cfg.backbone, "train_records": len(train), **rm.training,
                "held_out": metrics, "seconds": round(time.perf_counter() - began, 1)}
