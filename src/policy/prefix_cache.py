"""Key/value tensors of conversations kept between turns, so a later turn prefills only the
messages added since (a chat grows by a few messages per turn; on a CPU prefill dominates)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Hashable

import torch

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
