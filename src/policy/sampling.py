"""How a reply is sampled: the settings, the per-row seeds, and the token choice.

Each reply draws its randomness from its own seed (stage seed, episode seed, turn), one uniform
per decode step, so a reply is a function of its seed and its prompt alone: not of the batch it
was put in, the batch size or the number of processes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class SamplingConfig:
    temperature: float  # 0 => greedy
    top_p: float  # nucleus sampling
    max_new_tokens: int  # one utterance; longer text is cut (and may become invalid)
    batch_size: int  # prompts per generate call (lock-step episodes are batched)
    prefix_cache_gb: float  # memory for keeping conversations' key/values between turns; 0 = off
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
    its turn (training must then not append the end-of-turn token the model never emitted);
    ``action_ids``: the sampled tokens before the end-of-turn token, which training scores
    (decoding and stripping the text, then tokenising it again, need not give them back)."""

    truncated: bool = False
    action_ids: list[int] | None = None

    @classmethod
    def of(cls, text: str, truncated: bool, action_ids: list[int]) -> "Reply":
        reply = cls(text)
        reply.truncated, reply.action_ids = truncated, list(action_ids)
        return reply


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


NUCLEUS_CANDIDATES = 1024  # tokens ranked by topk before falling back to a full sort


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` with every token outside the nucleus set to 0: a token is kept while the mass
    of the tokens ranked above it is below ``top_p``. The ranking needs only the most likely
    tokens: where the first ``NUCLEUS_CANDIDATES`` already hold ``top_p`` of the mass (almost
    every row), every later token is cut, so ``topk`` of them gives what a sort of the whole
    vocabulary would (the same values in the same order, hence the same running sums); other
    rows are sorted in full. A sort of the 49k-token vocabulary per row and step took 15 % of
    a rollout on this CPU."""
    kept = torch.zeros_like(probs)
    k = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    top, order = probs.topk(k, dim=-1)
    running = top.cumsum(-1)
    before = running - top
    enough = running[:, -1] >= top_p  # the first token past the candidates is cut
    kept[enough] = kept[enough].scatter(-1, order[enough],
                                        top[enough].masked_fill(before[enough] >= top_p, 0))
    if not bool(enough.all()):
        rest = ~enough
        ranked, full_order = probs[rest].sort(dim=-1, descending=True, stable=True)
        cut = (ranked.cumsum(-1) - ranked) >= top_p
        kept[rest] = kept[rest].scatter(-1, full_order, ranked.masked_fill(cut, 0))
    return kept


def pick_tokens(logits: torch.Tensor, sampling: SamplingConfig, noise: RowNoise | None,
          rows: Sequence[int] | None = None) -> torch.Tensor:
    """Greedy, or temperature + nucleus sampling (the smallest set of tokens whose
    probability reaches ``top_p``; the most likely token is always kept), sampled by
    inverting each row's CDF at its own uniform draw. The CDF runs over token ids, not over
    the probability order, so a float round-off that swaps two near-equal probabilities
    moves no boundary: only a draw within round-off of a boundary can flip a token."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.double() / sampling.temperature, dim=-1)
    cdf = nucleus(probs, sampling.top_p).cumsum(-1)
    target = noise.uniform(logits.device, rows)[:, None] * cdf[:, -1:]
    token = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return token.clamp(max=probs.shape[-1] - 1)
