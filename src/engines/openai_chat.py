"""A policy served by an OpenAI-compatible endpoint (``POST {base_url}/chat/completions``): the
API models the paper evaluates against, or any model behind ``vllm serve``.

It stands where :class:`src.policy.policy.Policy` does in :func:`src.rollout.play.play` (an
opponent or a fixed rival; it is never trained: an API returns text, not the sampled token ids
training scores). Each conversation is one request carrying its own ``seed``, sent from a small
thread pool; a reply that stopped at ``max_tokens`` (``finish_reason: length``) is marked
``truncated``. ``extra_body`` is merged into every request (server extensions, e.g. vLLM's
``{"return_token_ids": true}``); where an answer carries the sampled ``token_ids``, the reply
keeps them as ``action_ids``, stop token included (the client does not know the tokenizer).
Transient failures (connection errors, 429, 5xx) are retried with backoff; any
other answer stops with the endpoint's own message. Standard library only.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Hashable, Sequence

from src.io_utils import InputError
from src.policy.policy import GenerationStats
from src.policy.sampling import Reply, SamplingConfig, row_seed

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(InputError):
    """The endpoint refused a request or answered something that is not a chat completion."""


@dataclass
class EndpointConfig:
    """Where an ``openai`` opponent or oracle is served (params.yaml: evaluate.endpoint,
    games.oracle.endpoint)."""
    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1 (vllm serve)
    model: str  # the served model's name
    api_key_env: str  # environment variable holding the API key (never params.yaml itself)

    def problem(self, who: str) -> str | None:
        """Why ``who`` (a params key of kind openai) cannot use this endpoint, or None."""
        if not self.base_url.startswith(("http://", "https://")) or not self.model:
            return (f"{who} openai needs endpoint.base_url (http:// or https://) and "
                    f"endpoint.model")
        return None

    def policy(self, name: str | None = None) -> "OpenAIChatPolicy":
        return OpenAIChatPolicy(self.base_url, self.model, self.api_key_env, name=name)


class OpenAIChatPolicy:
    reuses_prefixes = False  # the server keeps its own caches

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, retries: int = 4, workers: int = 8,
                 extra_body: dict | None = None, name: str | None = None):
        self.base_url, self.model = base_url.rstrip("/"), model
        self.api_key = os.environ.get(api_key_env, "")
        self.timeout_s, self.retries, self.workers = timeout_s, retries, workers
        self.extra_body = dict(extra_body or {})
        self.name = name or f"{model}@{self.base_url}"
        self.stats = GenerationStats()

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig,
                 seed: int | Sequence[int], cache=None, keys: list[Hashable] | None = None
                 ) -> list[Reply]:
        """One reply per conversation; conversation i is sent with seed ``seed[i]`` (an int
        gives ``row_seed(seed, i)``), reduced to the 31 bits every server accepts."""
        seeds = ([row_seed(seed, i) for i in range(len(conversations))] if isinstance(seed, int)
                 else list(seed))
        if len(seeds) != len(conversations):
            raise ValueError(f"{len(seeds)} seeds for {len(conversations)} conversations")
        began = time.perf_counter()
        with ThreadPoolExecutor(max(1, min(self.workers, len(conversations)))) as pool:
            answers = list(pool.map(lambda c, s: self.complete(c, sampling, s), conversations, seeds))
        replies = []
        for text, finish, usage, token_ids in answers:
            reply = Reply(text)
            reply.truncated, reply.action_ids = finish == "length", token_ids
            replies.append(reply)
        self.stats.add(GenerationStats(
            len(answers), sum(a[2].get("prompt_tokens", 0) for a in answers), 0,
            sum(a[2].get("completion_tokens", 0) for a in answers), time.perf_counter() - began))
        return replies

    def complete(self, messages: list[dict], sampling: SamplingConfig, seed: int
                 ) -> tuple[str, str, dict, list[int] | None]:
        """(reply text, finish_reason, usage, sampled token ids if the server returns them) of
        one chat completion."""
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens,
                "seed": seed % 2**31, "n": 1, **self.extra_body}
        data = self._post("/chat/completions", body)
        try:
            choice = data["choices"][0]
            token_ids = choice.get("token_ids")
            return ((choice["message"].get("content") or "").strip(),
                    choice.get("finish_reason") or "", data.get("usage") or {},
                    None if token_ids is None else [int(t) for t in token_ids])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise EndpointError(f"{self.base_url}/chat/completions: not a chat completion: "
                                f"{json.dumps(data)[:300]}") from None

    def _post(self, path: str, body: dict) -> dict:
        url = self.base_url + path
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.api_key}"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as failed:
                detail = failed.read().decode(errors="replace")[:300]
                if failed.code not in RETRY_STATUS or attempt == self.retries:
                    raise EndpointError(f"{url}: HTTP {failed.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as failed:
                if attempt == self.retries:
                    raise EndpointError(f"{url}: no answer after {attempt + 1} tries "
                                        f"({getattr(failed, 'reason', failed)})") from None
            except json.JSONDecodeError:
                raise EndpointError(f"{url}: the answer is not JSON") from None
            time.sleep(min(30.0, 0.5 * 2 ** attempt))
        raise AssertionError("unreachable")
