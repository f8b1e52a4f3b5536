"""Oracles of the single-agent games (docs/method.md §4): who answers the agent's questions.

    oracle = get_oracle("objects", games_cfg.oracle)  # built once per process and reused
    oracle.answer("dog", "Is it alive?")               # Answer("Yes.", {"answer": "yes", ...})
    oracle.prime([("dog", "Is it alive?"), ("cat", "Is it big?")])  # one model call for a step
    oracle.answer_many([("Lima, Peru", "Which continent is it on?")])

``kind: kb`` (default) is the offline knowledge-base oracle; ``kind: llm`` prompts the causal LM
at ``llm_model`` (an HF id or folder) with the hidden target and its facts; ``kind: openai``
sends the same prompt to an OpenAI-compatible endpoint (``endpoint``: an API model, as the
paper's oracle, or ``vllm serve``).
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Protocol

from src.engines.openai_chat import EndpointConfig

from src.oracles.kb import Answer, KBOracle, KnowledgeBase, load_kb

ORACLE_KINDS = ("kb", "llm", "openai")


@dataclass
class OracleConfig:
    kind: str  # kb | llm | openai
    embedder: str  # sentence-transformers model matching questions (kb)
    similarity_floor: float  # cosine; below it "I don't know." (kb)
    llm_model: str  # HF id or local folder (llm)
    llm_device: str  # auto | cpu | cuda | cuda:N (llm)
    endpoint: EndpointConfig  # openai: the served model

    def validate(self) -> str | None:
        if self.kind not in ORACLE_KINDS:
            return f"kind '{self.kind}' is not one of {list(ORACLE_KINDS)}"
        if self.kind == "llm" and not self.llm_model:
            return "kind 'llm' needs llm_model (an HF model id or a local folder)"
        if self.kind == "openai" and self.endpoint.problem("kind"):
            return self.endpoint.problem("kind")
        if not -1.0 <= self.similarity_floor <= 1.0:
            return "similarity_floor must be in [-1, 1] (a cosine similarity)"
        return None


class Oracle(Protocol):
    kb: KnowledgeBase

    def prime(self, items: list[tuple[str, str]]) -> None: ...

    def answer(self, target: str, question: str) -> Answer: ...

    def answer_many(self, items: list[tuple[str, str]]) -> list[Answer]: ...


def make_oracle(domain: str, cfg: OracleConfig) -> Oracle:
    kb = load_kb(domain)
    if cfg.kind == "llm":
        from src.oracles.llm import LLMOracle

        return LLMOracle(kb, cfg.llm_model, cfg.llm_device)
    if cfg.kind == "openai":
        from src.oracles.llm import LLMOracle

        return LLMOracle(kb, cfg.endpoint.model, policy=cfg.endpoint.policy(name="oracle"))
    return KBOracle(kb, cfg.embedder, cfg.similarity_floor)


_ORACLES: dict[tuple, Oracle] = {}


def get_oracle(domain: str, cfg: OracleConfig) -> Oracle:
    """One oracle per (domain, config) per process, shared by every episode."""
    key = (domain, *astuple(cfg))
    if key not in _ORACLES:
        _ORACLES[key] = make_oracle(domain, cfg)
    return _ORACLES[key]


__all__ = ["Answer", "KBOracle", "KnowledgeBase", "Oracle", "OracleConfig", "get_oracle",
           "load_kb", "make_oracle"]
