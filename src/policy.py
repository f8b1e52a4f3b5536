"""The policy: a causal LM behind a chat template, with batched sampling and training encoding.

Generation and training share :meth:`Policy.prompt_ids` and :meth:`Policy.encode`, so a record
is trained on exactly the tokens the model was conditioned on when it acted (SPEC 9).

Generation is a small decode loop of our own rather than ``model.generate``: it lets a batch mix
conversations whose earlier turns are already in a :class:`PrefixCache` (their key/value tensors
are reused, only the new tokens are prefilled) with fresh ones. A chat grows by a few messages
per turn, so on a CPU, where prefill dominates, this removes most of the cost of later turns.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Hashable, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


@dataclass
class SamplingConfig:
    temperature: float = 0.8  # 0 => greedy
    top_p: float = 0.95  # nucleus sampling
    max_new_tokens: int = 40  # one utterance; longer text is cut (and may become invalid)
    batch_size: int = 32  # prompts per generate call (lock-step episodes are batched)
    prefix_cache_gb: float = 4.0  # memory for keeping conversations' key/values between turns; 0 = off
    # Results do not depend on batch_size: each reply draws its randomness from its own seed
    # (see Policy.generate), so batching changes only float round-off of padded batches.

    def validate(self) -> str | None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1 \
                or self.batch_size < 1 or self.prefix_cache_gb < 0:
            return ("need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1, batch_size >= 1, "
                    "prefix_cache_gb >= 0")
        return None


class Reply(str):
    """A generated reply's text; ``truncated``: it hit ``max_new_tokens`` before the model ended
    its turn (training must then not append the end-of-turn token the model never emitted)."""

    truncated: bool = False

    @classmethod
    def of(cls, text: str, truncated: bool) -> "Reply":
        reply = cls(text)
        reply.truncated = truncated
        return reply


@dataclass
class GenerationStats:
    prompts: int = 0
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0  # of prompt_tokens, not recomputed (prefix cache or batch-shared prefix)
    generated_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "GenerationStats") -> None:
        self.prompts += other.prompts
        self.prompt_tokens += other.prompt_tokens
        self.reused_prompt_tokens += other.reused_prompt_tokens
        self.generated_tokens += other.generated_tokens
        self.seconds += other.seconds


def row_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. stage seed, episode seed, turn): a hash, so nearby
    tuples give unrelated streams."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class RowNoise:
    """One uniform draw per row and decode step, each row from its own generator, so a row's
    sample depends on its seed and its own logits only: not on the batch it was put in."""

    def __init__(self, seeds: Sequence[int]):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def uniform(self, device: torch.device, rows: Sequence[int] | None = None) -> torch.Tensor:
        """One draw for each of ``rows`` (default: every row); the other rows' streams stay put."""
        chosen = self.generators if rows is None else [self.generators[r] for r in rows]
        draws = [torch.rand(1, generator=g, dtype=torch.float64) for g in chosen]
        return torch.cat(draws).to(device)


MIN_SHARED_PREFIX = 16  # tokens; a shorter common start is not worth its own forward pass
KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (heads, tokens, head_dim) each


@dataclass
class CachedPrompt:
    ids: list[int]
    layers: KeyValues

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.layers for t in pair)


class PrefixCache:
    """The last prompt of each conversation (by caller key) with its key/value tensors.

    A key only proposes a candidate: the tensors of a token prefix depend on those tokens alone,
    so reuse is decided by comparing token ids, and a stale or foreign entry is never wrong, only
    shorter. One cache per model. Past ``max_bytes`` a conversation is not stored (the stored
    ones stay: lock-step play visits every conversation once per step, so evicting the least
    recently used would evict the next one needed)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.entries: dict[Hashable, CachedPrompt] = {}

    def lookup(self, key: Hashable, ids: list[int]) -> tuple[int, CachedPrompt | None]:
        """(tokens of ``ids`` whose key/values are cached, the entry holding them)."""
        entry = self.entries.get(key)
        if entry is None:
            return 0, None
        # keep one token to compute the next-token logits
        return min(len(os.path.commonprefix([entry.ids, ids])), len(ids) - 1), entry

    def store(self, key: Hashable, ids: list[int], layers: KeyValues) -> None:
        self.forget([key])
        entry = CachedPrompt(ids, layers)
        if self.bytes + entry.bytes <= self.max_bytes:
            self.entries[key] = entry
            self.bytes += entry.bytes

    def forget(self, keys) -> None:
        for key in keys:
            entry = self.entries.pop(key, None)
            if entry is not None:
                self.bytes -= entry.bytes


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

    @cached_property
    def reuses_prefixes(self) -> bool:
        """Whether key/values can be kept between turns: only with full attention in every layer
        (a sliding-window layer drops the oldest tokens)."""
        return all(type(layer) is DynamicLayer for layer in DynamicCache(config=self.model.config).layers)

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

    def action_ids(self, action: str, truncated: bool = False) -> list[int]:
        """The action's tokens plus the end-of-turn token the model emitted to stop (none when
        the reply was cut at ``max_new_tokens``: the model never chose to stop there)."""
        ids = self.tokenizer(action, add_special_tokens=False)["input_ids"]
        return ids if truncated else ids + [self.end_ids[-1]]

    def encode(self, messages: list[dict], action: str, truncated: bool = False) -> tuple[list[int], int]:
        """(prompt + action token ids, index where the action starts)."""
        prompt = self.prompt_ids(messages)
        return prompt + self.action_ids(action, truncated), len(prompt)

    # -- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig,
                 seed: int | Sequence[int], cache: PrefixCache | None = None,
                 keys: list[Hashable] | None = None) -> list[Reply]:
        """One reply per conversation (a :class:`Reply`, which knows whether it was cut), in
        batches of prompts sorted by the tokens left to prefill. ``seed`` fixes the sampling per
        conversation: a list gives conversation i the seed ``seed[i]`` (rollouts pass one derived
        from stage seed, episode seed and turn); an int gives it ``row_seed(seed, i)``. Each
        conversation's reply is a function of its seed and prompt alone, so
        ``sampling.batch_size`` (or which other conversations share its batch) changes nothing
        beyond float round-off. With a ``cache``, ``keys[i]`` names conversation i: its cached
        prefix is reused and its new prompt is stored for the next turn (ignored for models with
        sliding-window attention)."""
        cache = cache if cache is not None and self.reuses_prefixes else None
        if isinstance(seed, int):
            seeds = [row_seed(seed, i) for i in range(len(conversations))]
        else:
            seeds = list(seed)
            if len(seeds) != len(conversations) and sampling.temperature > 0:
                raise ValueError(f"{len(seeds)} seeds for {len(conversations)} conversations")
        prompts = [self.prompt_ids(m) for m in conversations]
        reuse = ([cache.lookup(k, p) for k, p in zip(keys, prompts)] if cache is not None
                 else [(0, None)] * len(prompts))
        order = sorted(range(len(prompts)),
                       key=lambda i: (len(prompts[i]) - reuse[i][0], len(prompts[i])))
        replies: list[Reply] = [Reply()] * len(prompts)
        for start in range(0, len(order), sampling.batch_size):
            idx = order[start:start + sampling.batch_size]
            began = time.perf_counter()
            noise = RowNoise([seeds[i] for i in idx]) if sampling.temperature > 0 else None
            batch_reuse, shared = self._share_common_prefix([prompts[i] for i in idx],
                                                            [reuse[i] for i in idx])
            tokens, ended, stored = self._generate_batch([prompts[i] for i in idx], batch_reuse,
                                                         sampling, noise, keep=cache is not None)
            for row, i in enumerate(idx):
                replies[i] = Reply.of(self.tokenizer.decode(tokens[row], skip_special_tokens=True).strip(),
                                      truncated=not ended[row])
                if cache is not None:
                    cache.store(keys[i], prompts[i], stored[row])
            self.stats.add(GenerationStats(
                len(idx), sum(len(prompts[i]) for i in idx), sum(n for n, _ in batch_reuse) - shared,
                sum(map(len, tokens)), time.perf_counter() - began))
        return replies

    def _share_common_prefix(self, prompts: list[list[int]], reuse: list[tuple[int, CachedPrompt | None]]
                             ) -> tuple[list[tuple[int, CachedPrompt | None]], int]:
        """The batch's common start (every Twenty Questions episode opens with the same prompt;
        greedy episodes stay alike for turns) is prefilled once and reused as if cached by every
        row that has less of it cached, when that saves more than it costs. Returns the rows'
        reuse and the length of the prefix computed here."""
        if len(prompts) < 2 or not self.reuses_prefixes:
            return reuse, 0
        common = min(len(os.path.commonprefix(prompts)), min(map(len, prompts)) - 1)
        gainers = [row for row, (n, _) in enumerate(reuse) if n < common]
        if common < MIN_SHARED_PREFIX or len(gainers) < 2 \
                or sum(common - reuse[row][0] for row in gainers) <= common:
            return reuse, 0
        kv = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([prompts[0][:common]], device=self.device), cache=kv,
                   use_cache=True, logits_to_keep=1)
        shared = CachedPrompt(prompts[0][:common], [(k[0], v[0]) for k, v in self._layers(kv)])
        reuse = list(reuse)
        for row in gainers:
            reuse[row] = (common, shared)
        return reuse, common

    def _generate_batch(self, prompts: list[list[int]], reuse: list[tuple[int, CachedPrompt | None]],
                        sampling: SamplingConfig, noise: RowNoise | None, keep: bool
                        ) -> tuple[list[list[int]], list[bool], list[KeyValues]]:
        """Sample a reply (tokens before the end token) for each prompt and whether it ended
        with an end token; with ``keep``, also return each prompt's key/values. Layout per row:
        [pad | cached prefix | pad | new prompt tokens], with explicit positions, so rows of any
        cached and new lengths share one forward pass."""
        rows, device = len(prompts), self.device
        cached = [n for n, _ in reuse]
        width_cached = max(cached)
        width_new = max(len(p) - n for p, n in zip(prompts, cached))
        input_ids = torch.full((rows, width_new), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((rows, width_cached + width_new), dtype=torch.long)
        positions = torch.zeros((rows, width_new), dtype=torch.long)
        for row, (prompt, n) in enumerate(zip(prompts, cached)):
            new = len(prompt) - n
            input_ids[row, width_new - new:] = torch.tensor(prompt[n:])
            mask[row, width_cached - n:width_cached] = 1
            mask[row, width_cached + width_new - new:] = 1
            positions[row, width_new - new:] = torch.arange(n, len(prompt))
        kv = DynamicCache(config=self.model.config)
        if width_cached:
            for layer, (keys, values) in enumerate(self._padded_prefixes(reuse, width_cached)):
                kv.update(keys, values, layer)
        mask = mask.to(device)
        out = self.model(input_ids=input_ids.to(device), attention_mask=mask,
                         position_ids=positions.to(device), cache=kv, use_cache=True, logits_to_keep=1)
        stored = [[(k[row][:, cols], v[row][:, cols]) for k, v in self._layers(kv)]
                  for row, cols in enumerate(mask.bool())] if keep else []
        end_ids = torch.tensor(self.end_ids, device=device)
        next_position = torch.tensor([len(p) for p in prompts], device=device)
        # Rows leave the batch as they finish (their key/values too), so a long reply never
        # makes the finished rows compute on: sampled replies differ a lot in length.
        active = list(range(rows))
        tokens: list[list[int]] = [[] for _ in range(rows)]
        for step in range(sampling.max_new_tokens):
            token = self._pick(out.logits[:, -1], sampling, noise, active)
            for row, t in zip(active, token.tolist()):
                tokens[row].append(t)
            going = ~torch.isin(token, end_ids)
            if not bool(going.any()) or step + 1 == sampling.max_new_tokens:
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(-1)
                active = [active[i] for i in keep.tolist()]
                token, mask, next_position = token[keep], mask[keep], next_position[keep]
                kv.batch_select_indices(keep)
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self.model(input_ids=token[:, None], attention_mask=mask,
                             position_ids=(next_position + step)[:, None], cache=kv, use_cache=True)
        end = set(self.end_ids)
        ended = [bool(row_tokens) and row_tokens[-1] in end for row_tokens in tokens]
        replies = [row_tokens[:-1] if done else row_tokens for row_tokens, done in zip(tokens, ended)]
        return replies, ended, stored

    def _padded_prefixes(self, reuse, width: int):
        """Per layer, the batch's cached keys and values left-padded to ``width`` tokens."""
        template = next(entry.layers for _, entry in reuse if entry is not None)
        for layer, (k0, _) in enumerate(template):
            keys = k0.new_zeros((len(reuse), k0.shape[0], width, k0.shape[2]))
            values = torch.zeros_like(keys)
            for row, (n, entry) in enumerate(reuse):
                if n:
                    keys[row, :, width - n:] = entry.layers[layer][0][:, :n]
                    values[row, :, width - n:] = entry.layers[layer][1][:, :n]
            yield keys, values

    @staticmethod
    def _layers(kv: DynamicCache):
        return [(layer.keys, layer.values) for layer in kv.layers]

    @staticmethod
    def _pick(logits: torch.Tensor, sampling: SamplingConfig, noise: RowNoise | None,
              rows: Sequence[int] | None = None) -> torch.Tensor:
        """Greedy, or temperature + nucleus sampling (the smallest set of tokens whose
        probability reaches ``top_p``; the most likely token is always kept), sampled by
        inverting each row's CDF at its own uniform draw. The CDF runs over token ids, not over
        the probability order, so a float round-off that swaps two near-equal probabilities
        moves no boundary: only a draw within round-off of a boundary can flip a token."""
        if sampling.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.double() / sampling.temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
        cut = (sorted_probs.cumsum(-1) - sorted_probs) >= sampling.top_p
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(cut, 0))
        cdf = probs.cumsum(-1)
        target = noise.uniform(logits.device, rows)[:, None] * cdf[:, -1:]
        token = torch.searchsorted(cdf, target, right=True).squeeze(-1)
        return token.clamp(max=probs.shape[-1] - 1)
