"""The policy: a causal LM that samples replies to chats in batches.

Generation is a small decode loop of our own rather than ``model.generate``: it lets a batch mix
conversations whose earlier turns are already in a :class:`PrefixCache` (their key/value tensors
are reused, only the new tokens are prefilled) with fresh ones, and it lets finished rows leave
the batch. Chat encoding (shared with training) is :mod:`src.policy.chat`; the sampling rule and
its per-row seeds are :mod:`src.policy.sampling`.
"""
from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Hashable, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from src.policy.chat import ChatFormat
from src.policy.prefix_cache import MIN_SHARED_PREFIX, CachedPrompt, KeyValues, PrefixCache
from src.policy.sampling import Reply, RowNoise, SamplingConfig, pick_tokens, row_seed


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


class Policy:
    """A causal LM behind a chat template that samples replies in batches."""

    def __init__(self, model, tokenizer, name: str = "policy"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.chat = ChatFormat(tokenizer)
        self.end_ids = self.chat.end_ids
        self.stats = GenerationStats()

    @classmethod
    def load(cls, path, dtype: str = "float32", device: str = "auto", name: str | None = None,
             base=None):
        """The model in ``path``; a LoRA adapter goes on ``base`` (default ``models/base``)."""
        from src.policy.models import load_model

        model, tokenizer = load_model(path, dtype, device, **({"base": base} if base else {}))
        return cls(model, tokenizer, name or str(path))

    @cached_property
    def reuses_prefixes(self) -> bool:
        """Whether key/values can be kept between turns: only with full attention in every layer
        (a sliding-window layer drops the oldest tokens)."""
        return all(type(layer) is DynamicLayer for layer in DynamicCache(config=self.model.config).layers)

    @cached_property
    def cache_argument(self) -> str:
        """The forward argument that takes the key/value cache: ``cache`` since transformers
        5.24, ``past_key_values`` before (an older transformers silently ignores ``cache``, and
        every decode step would then see one token only)."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

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
        prompts = [self.chat.prompt_ids(m) for m in conversations]
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
                text = self.tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
                replies[i] = Reply.of(text, truncated=not ended[row], action_ids=tokens[row])
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
        self.model(input_ids=torch.tensor([prompts[0][:common]], device=self.device),
                   use_cache=True, logits_to_keep=1, **{self.cache_argument: kv})
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
                         position_ids=positions.to(device), use_cache=True, logits_to_keep=1,
                         **{self.cache_argument: kv})
        stored = [[(k[row][:, cols], v[row][:, cols]) for k, v in self._layers(kv)]
                  for row, cols in enumerate(mask.bool())] if keep else []
        end_ids = torch.tensor(self.end_ids, device=device)
        next_position = torch.tensor([len(p) for p in prompts], device=device)
        # Rows leave the batch as they finish (their key/values too), so a long reply never
        # makes the finished rows compute on: sampled replies differ a lot in length.
        active = list(range(rows))
        tokens: list[list[int]] = [[] for _ in range(rows)]
        for step in range(sampling.max_new_tokens):
            token = pick_tokens(out.logits[:, -1], sampling, noise, active)
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
                             position_ids=(next_position + step)[:, None], use_cache=True,
                             **{self.cache_argument: kv})
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
