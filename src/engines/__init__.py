"""Which engine generates the replies (``rollout.engine``): rollout, evaluation, the validation
curves and online play all get their policies from one :class:`Generation`.

- ``hf``: our decode loop (:class:`src.policy.policy.Policy`), each folder its own model.
- ``vllm``: one vLLM engine per process on ``models/base``; the base and every LoRA adapter
  folder are policies on it (``LoRARequest``), so the two seats of a game, or five evaluated
  policies, share its batches and prefix cache. A model being trained is played by saving
  its adapter into a scratch folder first (``playing``), as verl and OpenRLHF sync weights
  to their rollout engine.

A rollout is a function of its seeds under either engine, but the two engines draw different
random streams: sampled episodes differ between ``hf`` and ``vllm``; greedy ones agree up to
float round-off (tests/test_vllm_engine.py).
"""
from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from src.io_utils import InputError

ENGINE_KINDS = ("hf", "vllm")
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class EngineConfig:
    kind: str  # hf | vllm
    max_model_len: int  # vllm: the longest prompt + reply it serves
    gpu_memory_utilization: float  # vllm on GPU: share of the GPU's memory it takes
    max_loras: int  # vllm: adapters held at once (evaluate plays up to len(evaluate.policies))
    max_lora_rank: int  # vllm: the largest LoRA rank it serves (>= train.lora.r)

    def validate(self) -> str | None:
        if self.kind not in ENGINE_KINDS:
            return f"kind '{self.kind}' is not one of {list(ENGINE_KINDS)}"
        if self.max_model_len < 64 or self.max_loras < 1 or self.max_lora_rank < 1:
            return "max_model_len >= 64, max_loras >= 1 and max_lora_rank >= 1 are needed"
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            return "gpu_memory_utilization must be in (0, 1]"
        return None


_ENGINES: dict[tuple, object] = {}  # one vLLM engine per process and configuration


class Generation:
    """Policies on the configured engine, for a stage whose base model is ``base``."""

    def __init__(self, cfg: EngineConfig, base: str | Path, dtype: str = "float32",
                 device: str = "auto"):
        self.cfg, self.base, self.dtype, self.device = cfg, Path(base), dtype, device
        if cfg.kind == "vllm":
            from src import distributed

            if distributed.world() > 1:
                raise InputError("rollout.engine.kind vllm runs in one process: set "
                                 "launch.processes: 1 (vLLM batches and places the work itself)")

    @property
    def serves(self) -> bool:
        """Whether replies come from a serving engine (not from the model in memory)."""
        return self.cfg.kind == "vllm"

    def engine(self):
        from src.engines.vllm_engine import VllmEngine

        key = (str(self.base.resolve()), self.dtype, self.cfg.max_model_len,
               self.cfg.gpu_memory_utilization, self.cfg.max_loras, self.cfg.max_lora_rank)
        if key not in _ENGINES:
            _ENGINES[key] = VllmEngine(self.base, self.dtype, self.cfg.max_model_len,
                                       max_lora_rank=self.cfg.max_lora_rank,
                                       max_loras=self.cfg.max_loras,
                                       gpu_memory_utilization=self.cfg.gpu_memory_utilization)
        return _ENGINES[key]

    def policy(self, folder: str | Path, name: str):
        """The policy of a model folder: the base, or (vllm) a LoRA adapter on it."""
        if not self.serves:
            from src.policy.policy import Policy

            return Policy.load(folder, self.dtype, self.device, name=name, base=self.base)
        if Path(folder).resolve() == self.base.resolve():
            return self.engine().policy(None, name)
        adapter = Path(folder) / ADAPTER_CONFIG
        if not adapter.is_file():
            raise InputError(f"{folder}: rollout.engine.kind vllm serves {self.base} and LoRA "
                             f"adapters on it; this folder is neither (no {ADAPTER_CONFIG}: a "
                             f"fully fine-tuned model needs kind hf)")
        on = json.loads(adapter.read_text()).get("base_model_name_or_path") or ""
        if on and Path(on).exists() and Path(on).resolve() != self.base.resolve():
            raise InputError(f"{adapter}: an adapter on {on}, but the engine serves {self.base}")
        return self.engine().policy(folder, name)

    def base_policy(self, name: str = "base"):
        """The base model on the serving engine (the rival while a trained model plays)."""
        return self.engine().policy(None, name)

    def base_pair(self, name: str = "base"):
        """(player, opponent): two policies on the base weights, batched apart."""
        if self.serves:
            return self.engine().policy(None, "current"), self.engine().policy(None, name)
        from src.policy.models import load_model
        from src.policy.policy import Policy

        model, tokenizer = load_model(str(self.base), self.dtype)
        return Policy(model, tokenizer, name="current"), Policy(model, tokenizer, name=name)


@contextlib.contextmanager
def playing(model, tokenizer, name: str, generation: Generation | None = None):
    """A policy that plays ``model`` as it is now, in eval mode while it plays: the model
    itself (no ``generation``, or kind hf), or under vllm its LoRA adapter saved to a scratch
    folder and served by the engine."""
    from src.policy.policy import Policy

    was_training = model.training
    model.eval()
    try:
        if generation is None or not generation.serves:
            yield Policy(model, tokenizer, name=name)
            return
        if not hasattr(model, "peft_config"):
            raise InputError("rollout.engine.kind vllm plays a model in training through its "
                             "LoRA adapter: set train.lora.enabled true, or use kind hf")
        with tempfile.TemporaryDirectory(prefix=f"{name}-") as scratch:
            model.save_pretrained(scratch)
            yield generation.engine().policy(scratch, name)
    finally:
        model.train(was_training)


__all__ = ["ENGINE_KINDS", "EngineConfig", "Generation", "playing"]
