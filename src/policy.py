"""The policy: a causal LM behind a chat template, with batched sampling and training encoding.

Generation and training share :meth:`Policy.prompt_ids` and :meth:`Policy.encode`, so a record
is trained on exactly the tokens the model was conditioned on when it acted (SPEC 9).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class SamplingConfig:
    temperature: float = 0.8  # 0 => greedy
    top_p: float = 0.95  # nucleus sampling
    max_new_tokens: int = 40  # one utterance; longer text is cut (and may become invalid)
    batch_size: int = 32  # prompts per generate call (lock-step episodes are batched)

    def validate(self) -> str | None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            return "need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1, batch_size >= 1"
        return None


@dataclass
class GenerationStats:
    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "GenerationStats") -> None:
        self.prompts += other.prompts
        self.prompt_tokens += other.prompt_tokens
        self.generated_tokens += other.generated_tokens
        self.seconds += other.seconds


class Policy:
    def __init__(self, model, tokenizer, name: str = "policy"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.end_ids = sorted({tokenizer.eos_token_id, *self._im_end_ids()})
        self.stats = GenerationStats()

    @classmethod
    def load(cls, path, dtype: str = "float32", device: str = "auto", name: str | None = None):
        from src.models import load_model

        model, tokenizer = load_model(path, dtype, device)
        return cls(model, tokenizer, name or str(path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _im_end_ids(self) -> list[int]:
        tid = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        return [tid] if isinstance(tid, int) and tid != self.tokenizer.unk_token_id else []

    # -- tokenisation shared by generation and training --------------------------------
    def prompt_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def action_ids(self, action: str) -> list[int]:
        """The action's tokens plus the end-of-turn token the model emitted to stop."""
        return self.tokenizer(action, add_special_tokens=False)["input_ids"] + [self.end_ids[-1]]

    def encode(self, messages: list[dict], action: str) -> tuple[list[int], int]:
        """(prompt + action token ids, index where the action starts)."""
        prompt = self.prompt_ids(messages)
        return prompt + self.action_ids(action), len(prompt)

    # -- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig,
                 seed: int) -> list[str]:
        """One reply per conversation. Prompts are sorted by length and batched (left
        padding, KV cache inside each generate call); ``seed`` fixes the sampling."""
        prompts = [self.prompt_ids(m) for m in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        replies: list[str] = [""] * len(prompts)
        pad = self.tokenizer.pad_token_id
        for b, start in enumerate(range(0, len(order), sampling.batch_size)):
            idx = order[start:start + sampling.batch_size]
            width = max(len(prompts[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                input_ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            torch.manual_seed(seed * 100_003 + b)
            began = time.perf_counter()
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None, top_k=None,
                eos_token_id=self.end_ids, pad_token_id=pad,
            )
            new = out[:, width:].cpu()
            generated = 0
            for row, i in enumerate(idx):
                tokens = new[row].tolist()
                cut = next((j for j, t in enumerate(tokens) if t in self.end_ids), len(tokens))
                generated += cut
                replies[i] = self.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()
            self.stats.add(GenerationStats(len(idx), int(mask.sum()), generated,
                                           time.perf_counter() - began))
        return replies
