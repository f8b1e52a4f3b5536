"""The OpenAI-compatible policy against a loopback server that speaks the chat-completions
protocol: what it sends (messages, seed, limits), how it reads replies (text, truncation,
usage), retries on transient failures and clear errors otherwise. A real model behind
``vllm serve`` is tested in tests/test_vllm_engine.py where vLLM installs."""
import pytest

from loopback_endpoint import completion, serve  # noqa: F401 (a fixture)
from src.config import defaults
from src.engines.openai_chat import EndpointError, OpenAIChatPolicy
from src.policy.sampling import SamplingConfig, row_seed

CHATS = [[{"role": "system", "content": "You are Alice."}, {"role": "user", "content": f"Offer {i}"}]
         for i in range(5)]


def sampling(**overrides) -> SamplingConfig:
    return defaults(SamplingConfig, "evaluate.sampling", **overrides)


def test_sends_each_chat_with_its_seed_and_reads_text_and_truncation(serve, monkeypatch):
    monkeypatch.setenv("ARIA_TEST_KEY", "secret")
    endpoint = serve(lambda body: (200, completion(f"  echo {body['messages'][-1]['content']} ",
                                                   "length" if body["seed"] % 2 else "stop")))
    policy = OpenAIChatPolicy(endpoint.url, "rival", api_key_env="ARIA_TEST_KEY", workers=3)
    replies = policy.generate(CHATS, sampling(max_new_tokens=24), seed=11)
    assert list(map(str, replies)) == [f"echo Offer {i}" for i in range(5)]
    seeds = [row_seed(11, i) % 2**31 for i in range(5)]
    assert [r.truncated for r in replies] == [bool(s % 2) for s in seeds]
    sent = sorted(endpoint.requests, key=lambda r: r[2]["messages"][-1]["content"])
    assert [body["seed"] for _, _, body in sent] == seeds
    assert all(path == "/v1/chat/completions" and auth == "Bearer secret" for path, auth, _ in sent)
    assert all(body["max_tokens"] == 24 and body["model"] == "rival" and body["temperature"] == 0.7
               for _, _, body in sent)
    assert [body["messages"] for _, _, body in sent] == CHATS
    assert (policy.stats.prompts, policy.stats.prompt_tokens, policy.stats.generated_tokens) == (5, 35, 15)


def test_retries_a_transient_failure(serve):
    failures = iter([503, 429])
    endpoint = serve(lambda body: (next(failures, 200), completion("ok", "stop")))
    replies = OpenAIChatPolicy(endpoint.url, "rival", workers=1).generate(CHATS[:1], sampling(), seed=[5])
    assert list(map(str, replies)) == ["ok"] and len(endpoint.requests) == 3


def test_a_refusal_stops_with_the_endpoints_message(serve):
    endpoint = serve(lambda body: (400, {"error": {"message": "model 'rival' does not exist"}}))
    with pytest.raises(EndpointError, match=r"HTTP 400: .*model 'rival' does not exist"):
        OpenAIChatPolicy(endpoint.url, "rival").generate(CHATS[:2], sampling(), seed=0)
    assert len(endpoint.requests) == 2  # no retry of a refusal


def test_an_answer_that_is_not_a_completion_is_an_error(serve):
    endpoint = serve(lambda body: (200, {"choices": []}))
    with pytest.raises(EndpointError, match="not a chat completion"):
        OpenAIChatPolicy(endpoint.url, "rival").generate(CHATS[:1], sampling(), seed=0)


def test_an_unreachable_endpoint_is_an_error_after_retries():
    policy = OpenAIChatPolicy("http://127.0.0.1:9/v1", "rival", retries=1, timeout_s=2)
    with pytest.raises(EndpointError, match="no answer after 2 tries"):
        policy.generate(CHATS[:1], sampling(), seed=0)


def test_extra_body_is_sent_and_returned_token_ids_are_kept(serve):
    def answer(body):
        data = completion("ok", "stop")
        if body.get("return_token_ids"):
            data["choices"][0]["token_ids"] = [body["seed"] % 7, 3, 2]
        return 200, data

    endpoint = serve(answer)
    plain = OpenAIChatPolicy(endpoint.url, "rival").generate(CHATS[:1], sampling(), seed=[9])
    with_ids = OpenAIChatPolicy(endpoint.url, "rival", extra_body={"return_token_ids": True}
                                ).generate(CHATS[:1], sampling(), seed=[9])
    assert plain[0].action_ids is None and with_ids[0].action_ids == [9 % 7, 3, 2]
    assert "return_token_ids" not in endpoint.requests[0][2] and endpoint.requests[1][2]["return_token_ids"]
