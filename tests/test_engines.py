"""Which engine generates (rollout.engine) and the OpenAI-compatible opponent and oracle: the
checks that need no vLLM (what the vllm engine refuses, the openai kinds against a loopback
server). The vLLM engine itself plays the stages in tests/test_vllm_engine.py."""
import json

import pytest

from loopback_endpoint import completion, serve  # noqa: F401 (a fixture)
from src import distributed
from src.config import ConfigError, defaults
from src.engines import EngineConfig, Generation, playing
from src.engines.openai_chat import EndpointConfig
from src.evaluation.evaluate import EvaluateConfig, evaluate_game
from src.games import GamesConfig, TwoPlayerConfig
from src.io_utils import InputError
from src.oracles import OracleConfig, make_oracle
from src.policy.sampling import SamplingConfig

GREEDY = defaults(SamplingConfig, "evaluate.sampling", temperature=0.0, max_new_tokens=8)


def engine(**overrides) -> EngineConfig:
    return defaults(EngineConfig, "rollout.engine", **overrides)


def test_engine_kind_and_limits_are_checked_at_load():
    assert engine().kind == "hf"
    with pytest.raises(ConfigError, match="kind 'sglang' is not one of"):
        engine(kind="sglang")
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        engine(gpu_memory_utilization=0.0)


def test_vllm_serves_the_base_and_its_adapters_only(tiny_model_dir, tmp_path):
    """A fully fine-tuned folder, or an adapter on another base, is refused before any engine
    starts, with the reason."""
    vllm = Generation(engine(kind="vllm"), tiny_model_dir)
    assert vllm.serves and not Generation(engine(), tiny_model_dir).serves
    with pytest.raises(InputError, match="fully fine-tuned model needs kind hf"):
        vllm.policy(tmp_path, "full")
    other = tmp_path / "adapter"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path)}))
    with pytest.raises(InputError, match="an adapter on"):
        vllm.policy(other, "aria")


def test_vllm_runs_in_one_process(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 2)
    with pytest.raises(InputError, match="launch.processes: 1"):
        Generation(engine(kind="vllm"), tiny_model_dir)


def test_playing_a_model_in_training(tiny_policy):
    """hf plays the model itself in eval mode and gives it back in train mode; vllm needs a
    LoRA adapter to hand to the engine."""
    model = tiny_policy.model
    model.train()
    with playing(model, tiny_policy.tokenizer, "current") as policy:
        assert policy.model is model and not model.training
    assert model.training
    with pytest.raises(InputError, match="train.lora.enabled true"):
        with playing(model, tiny_policy.tokenizer, "current",
                     Generation(engine(kind="vllm"), "models/base")):
            pass
    assert model.training
    model.eval()


def endpoint_config(url: str, **overrides) -> dict:
    return {"base_url": url, "model": "rival", "api_key_env": "ARIA_TEST_KEY", **overrides}


def test_openai_opponent_plays_the_other_seat(serve, tiny_model_dir):
    """evaluate.opponent openai: every opponent move is the endpoint's reply to that seat's
    chat, and the metrics name the served model."""
    rival = serve(lambda body: (200, completion("I offer $5.", "stop")))
    cfg = defaults(EvaluateConfig, "evaluate", policies={"base": str(tiny_model_dir)},
                   opponent="openai", endpoint=endpoint_config(rival.url), episodes=2,
                   sampling=GREEDY, comparisons=[])
    games = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=1))
    records, metrics = evaluate_game("bargaining", games, cfg,
                                     Generation(engine(), tiny_model_dir, device="cpu"))
    assert metrics["opponent"] == f"rival@{rival.url}" and metrics["engine"] == "hf"
    theirs = [t for r in records for t in r["turns"]
              if t["speaker"] not in (r["evaluation"]["seat"], "env")]
    assert theirs and all(t["text"] == "I offer $5." for t in theirs)
    assert len(rival.requests) == len(theirs)  # one request per opponent move
    assert all(body["model"] == "rival" and body["messages"][0]["role"] == "system"
               for _, _, body in rival.requests)


def test_openai_opponent_and_oracle_need_an_endpoint():
    with pytest.raises(ConfigError, match="opponent openai needs endpoint.base_url"):
        defaults(EvaluateConfig, "evaluate", opponent="openai")
    with pytest.raises(ConfigError, match="kind openai needs endpoint.base_url"):
        defaults(OracleConfig, "games.oracle", kind="openai")


def test_openai_oracle_answers_from_the_endpoint_through_the_rules(serve):
    """games.oracle.kind openai: the endpoint sees the hidden object and its facts; its
    free-text reply is cut to the game's answers (Yes. / No. / I don't know.)."""
    answerer = serve(lambda body: (200, completion(
        "Yes, it is." if "alive" in body["messages"][-1]["content"] else "Hmm, hard to say", "stop")))
    oracle = make_oracle("objects", defaults(OracleConfig, "games.oracle", kind="openai",
                                             endpoint=EndpointConfig(**endpoint_config(answerer.url))))
    target = next(iter(oracle.kb.entries))
    assert oracle.answer(target, "Is it alive?").text == "Yes."
    assert oracle.answer(target, "Is it made of metal?").text == oracle.kb.unknown.text
    system = answerer.requests[0][2]["messages"][0]["content"]
    assert target in system and oracle.kb.describe(target) in system
