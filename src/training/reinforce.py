"""The REINFORCE objective of docs/method.md §9 and the trainable policy it is applied to.

loss = -mean over records of w * sum over action tokens of log pi(token | messages, earlier
action tokens). Records are tokenised by :meth:`ChatFormat.encode_record` (the generation chat
template, and the sampled action tokens when the record has them), left-padded with explicit
position ids so a padded row scores exactly like an unpadded one, and only the logits of the
last (longest action + 1) positions are computed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from src.policy.models import load_model
from src.policy.chat import ChatFormat

Encoded = tuple[list[int], int]  # (prompt + action token ids, index where the action starts)


@dataclass
class LoraSettings:
    enabled: bool  # false => full fine-tuning of every weight
    r: int  # LoRA rank
    alpha: int  # LoRA scaling numerator (scale = alpha / r)
    dropout: float  # dropout on the LoRA input
    target_modules: list[str]

    def validate(self) -> str | None:
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or not self.target_modules:
            return "need r >= 1, alpha > 0, 0 <= dropout < 1 and at least one target module"
        return None


def build_trainable_model(base_path: str, dtype: str, lora: LoraSettings, seed: int,
                          start: str | Path | None = None):
    """(model in train mode, tokenizer): the base policy plus a fresh LoRA whose random init
    is fixed by ``seed``, or the whole base model when LoRA is off. ``start`` (a later ARIA
    iteration, src/rollout/iterations.py): that trained adapter, trainable, on the base model (LoRA
    off: that fully fine-tuned model) instead of a fresh one."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if start is not None and not lora.enabled:
        model, tokenizer = load_model(str(start), dtype, "cpu")
        return model.train(), tokenizer
    model, tokenizer = load_model(base_path, dtype, "cpu")
    torch.manual_seed(seed)
    if start is not None:
        model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
        model.peft_config["default"].base_model_name_or_path = str(base_path)
    elif lora.enabled:
        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules)))
        # Relative to the repository root, so src.policy.models.load_model finds the base again.
        model.peft_config["default"].base_model_name_or_path = str(base_path)
    return model.train(), tokenizer


def trainable_parameters(model) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def encode_records(records: list[dict], tokenizer) -> list[Encoded]:
    return list(map(ChatFormat(tokenizer).encode_record, records))


def collate(encoded: list[Encoded], pad_id: int, device: torch.device | str = "cpu") -> dict:
    """Left-padded batch; ``action_lengths[i]`` tokens at the end of row i are the action."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, _) in enumerate(encoded):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        mask[row, width - len(ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    lengths = torch.tensor([len(ids) - start for ids, start in encoded])
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
            "position_ids": positions.to(device), "action_lengths": lengths.to(device)}


def action_log_probs(model, batch: dict) -> torch.Tensor:
    """Sum of the log-probabilities of each row's action tokens, shape [rows]."""
    lengths = batch["action_lengths"]
    keep = int(lengths.max()) + 1
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=keep,
                   use_cache=False).logits.float()
    targets = batch["input_ids"][:, -(keep - 1):]
    token_logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, targets[..., None])[..., 0]
    offsets = torch.arange(keep - 1, device=lengths.device)
    is_action = offsets[None, :] >= (keep - 1 - lengths)[:, None]
    return (token_logp * is_action).sum(-1)


def reinforce_loss(log_probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return -(weights * log_probs).mean()


def apply_baseline(weights: torch.Tensor, baseline: str) -> torch.Tensor:
    """``batch_mean`` subtracts the minibatch mean of w (a variance-reducing baseline)."""
    return weights - weights.mean() if baseline == "batch_mean" else weights


class NonFinite(Exception):
    """A NaN or infinite loss or gradient norm, caught before it reaches the weights."""

    def __init__(self, what: str, value: float):
        super().__init__(f"{what} is {value}")


def check_finite(value: torch.Tensor, what: str) -> None:
    if not torch.isfinite(value):
        raise NonFinite(what, value.item())


def reinforce_step(model, optimizer, accelerator, encoded: list[Encoded], weights: torch.Tensor,
                   pad_id: int, baseline: str, max_grad_norm: float) -> float:
    """One optimizer step on a minibatch (offline and online training): the baseline over the
    whole minibatch, each process its shard of the rows. Each process's loss is scaled so that
    the gradient averaged over processes is that of the whole minibatch's mean loss: P
    processes equal one up to float round-off, whatever the minibatch size. Returns the
    minibatch's loss; raises :class:`NonFinite` before a bad step changes the weights."""
    from src.distributed import batch_shard

    centred = apply_baseline(weights, baseline)
    rows, scale = batch_shard(range(len(encoded)))
    batch = collate([encoded[i] for i in rows], pad_id, accelerator.device)
    with accelerator.autocast():
        loss = reinforce_loss(action_log_probs(model, batch), centred[rows]) * scale
    check_finite(loss, "loss")
    accelerator.backward(loss)
    check_finite(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm), "gradient norm")
    optimizer.step()
    optimizer.zero_grad()
    return accelerator.reduce(loss.detach(), "mean").item()
