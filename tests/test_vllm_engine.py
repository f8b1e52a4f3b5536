"""The vLLM engine (src/engines/vllm_engine.py) against our decode loop, on the packaged SmolLM2.

vLLM is optional: the CPU build ``vllm-cpu`` 0.32 needs transformers < 5.20 and the project
pins 5.24, so these tests run in the environment ``scripts/setup_vllm.sh`` builds
(``.venv-vllm/bin/python -m pytest tests/test_vllm_engine.py``) and are skipped elsewhere.
"""
import os

import pytest

# A small key/value cache and no thread pinning: the tests share a small CPU with others.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
pytest.importorskip("vllm", reason="vLLM is optional (vllm-cpu needs transformers < 5.20, the "
                                   "project pins 5.24): run scripts/setup_vllm.sh")

import torch  # noqa: E402

from src.config import defaults  # noqa: E402
from src.games import GamesConfig, make_game  # noqa: E402
from src.policy.models import ModelConfig, prepare_model  # noqa: E402
from src.policy.policy import Policy  # noqa: E402
from src.policy.sampling import SamplingConfig  # noqa: E402
from src.rollout.play import play  # noqa: E402

pytestmark = pytest.mark.real_model
GREEDY = dict(temperature=0.0, max_new_tokens=24, batch_size=16)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vllm") / "base"
    prepare_model(defaults(ModelConfig, "model"), path)
    return path


@pytest.fixture(scope="module")
def generation(base_dir):
    """rollout.engine kind vllm on the base: the stages' way to the engine (one per process)."""
    from src.engines import EngineConfig, Generation

    return Generation(defaults(EngineConfig, "rollout.engine", kind="vllm", max_model_len=2048),
                      base_dir)


@pytest.fixture(scope="module")
def engine(generation):
    return generation.engine()


def random_lora(base_dir):
    """A LoRA adapter on the base whose B is not zero (at init the adapter is the base)."""
    from peft import LoraConfig, get_peft_model

    model = Policy.load(base_dir, device="cpu").model
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    model.peft_config["default"].base_model_name_or_path = str(base_dir)
    return model


@pytest.fixture(scope="module")
def adapter_dir(base_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("vllm") / "adapter"
    random_lora(base_dir).save_pretrained(path)
    return path


def new_game(name: str, seed: int):
    game = make_game(name, defaults(GamesConfig, "games"))
    game.reset(seed)
    return game


def opening_chats(n: int) -> list[list[dict]]:
    """The first move's chat of n bargaining and n Twenty Questions episodes (real prompts)."""
    return [new_game(name, seed).observation()
            for name in ("bargaining", "twenty_questions") for seed in range(n)]


def sampling(**overrides) -> SamplingConfig:
    return defaults(SamplingConfig, "rollout.sampling", **{**GREEDY, **overrides})


def assert_same_replies(ours, theirs):
    assert [r.action_ids for r in ours] == [r.action_ids for r in theirs]
    assert list(map(str, ours)) == list(map(str, theirs))
    assert [r.truncated for r in ours] == [r.truncated for r in theirs]


NEAR_TIE = 0.05  # logit units: float round-off of two engines' kernels (SmolLM2's logits span ~30)


@torch.no_grad()
def assert_greedy_agrees(model, chat, chats, theirs, ours) -> int:
    """Greedy replies of two engines agree: each reply is identical, or the two part at a
    near-tie, where our model (one unpadded row) scores both engines' tokens within
    ``NEAR_TIE``; after that the texts may go their own ways. Returns the identical count."""
    identical = 0
    for messages, a, b in zip(chats, theirs, ours):
        if a.action_ids == b.action_ids:
            identical += 1
            assert str(a) == str(b) and a.truncated == b.truncated
            continue
        common = next(i for i, (x, y) in enumerate(zip(a.action_ids + [-1], b.action_ids + [-2])) if x != y)
        prefix = chat.prompt_ids(messages) + a.action_ids[:common]
        logits = model(input_ids=torch.tensor([prefix])).logits[0, -1].float()
        tokens = [ids[common] if common < len(ids) else chat.end_ids[-1] for ids in (a.action_ids, b.action_ids)]
        gap = abs(float(logits[tokens[0]] - logits[tokens[1]]))
        assert gap < NEAR_TIE, f"replies part at token {common} with a logit gap of {gap:.3f}: {a!r} vs {b!r}"
    print(f"greedy: {identical} of {len(chats)} replies identical, the rest part at near-ties")
    assert identical >= len(chats) // 2
    return identical


def test_greedy_replies_equal_our_decode_loop(engine, base_dir):
    chats, policy = opening_chats(8), Policy.load(base_dir, device="cpu")
    ours = policy.generate(chats, sampling(), seed=0)
    theirs = engine.policy().generate(chats, sampling(), seed=0)
    assert_greedy_agrees(policy.model, policy.chat, chats, theirs, ours)


def test_lora_adapter_greedy_equals_transformers_and_peft(engine, adapter_dir, base_dir):
    chats = opening_chats(8)
    base = engine.policy().generate(chats, sampling(), seed=0)
    adapted = engine.policy(adapter_dir).generate(chats, sampling(), seed=0)
    merged = Policy.load(adapter_dir, device="cpu", base=base_dir)
    peft = merged.generate(chats, sampling(), seed=0)
    assert_greedy_agrees(merged.model, merged.chat, chats, adapted, peft)
    assert [r.action_ids for r in adapted] != [r.action_ids for r in base]  # the adapter acts


def test_seeded_sample_does_not_depend_on_its_batch(engine):
    chats, cfg = opening_chats(4), sampling(temperature=0.8, top_p=0.95)
    seeds = list(range(100, 100 + len(chats)))
    together = engine.policy().generate(chats, cfg, seed=seeds)
    halves = (engine.policy().generate(chats[:4], cfg, seed=seeds[:4])
              + engine.policy().generate(chats[4:][::-1], cfg, seed=seeds[4:][::-1])[::-1])
    assert_same_replies(together, halves)
    assert len({tuple(r.action_ids) for r in together}) > 1


def test_plays_multi_turn_episodes_through_the_rollout_loop(engine):
    games = [new_game("bargaining", seed) for seed in range(4)]
    policy = engine.policy()
    play(games, [{p: policy for p in g.players} for g in games],
         sampling(temperature=0.8, top_p=0.95), seed=0)
    records = [g.record() for g in games]
    assert all(g.done for g in games)
    moves = [t for r in records for t in r["turns"] if t["speaker"] != "env"]
    assert len(moves) > len(games) and all(t["action_ids"] for t in moves)


def test_rollout_on_vllm_is_a_function_of_its_seeds(generation, base_dir):
    """The rollout stage's self-play on rollout.engine vllm: every move carries its sampled
    token ids, and a second run gives the same episodes (per-request seeds)."""
    from src.rollout.play import RolloutConfig, self_play

    cfg = defaults(RolloutConfig, "rollout", episodes=4, engine=generation.cfg)
    games = defaults(GamesConfig, "games")
    runs = [self_play("bargaining", games, generation.policy(base_dir, "base"), cfg) for _ in range(2)]
    (records, metrics), (again, _) = runs
    assert metrics["engine"] == "vllm" and metrics["episodes"] == 4
    assert [r["turns"] for r in records] == [r["turns"] for r in again]
    moves = [t for r in records for t in r["turns"] if t["speaker"] != "env"]
    assert moves and all(t["action_ids"] for t in moves)


def test_evaluate_on_vllm_plays_adapters_against_the_base(generation, base_dir, adapter_dir):
    """evaluate on rollout.engine vllm: the base and a LoRA adapter on one engine, the adapter
    in both seats against the base; its greedy moves are the adapter's, not the base's."""
    from src.evaluation.evaluate import EvaluateConfig, evaluate_game

    cfg = defaults(EvaluateConfig, "evaluate", policies={"base": str(base_dir), "lora": str(adapter_dir)},
                   opponent=str(base_dir), episodes=4, sampling=sampling(), comparisons=[["lora", "base"]])
    records, metrics = evaluate_game("bargaining", defaults(GamesConfig, "games"), cfg, generation)
    assert metrics["engine"] == "vllm" and metrics["policies"]["lora"]["episodes"] == 4
    first = {r["evaluation"]["policy"]: r["turns"][0]["text"] for r in records
             if r["evaluation"]["seat"] == "alice"}
    assert first["lora"] != first["base"]  # the adapter acts on the engine


def test_validation_point_plays_the_model_in_training_through_its_adapter(generation, base_dir):
    """A model in training is played on the engine by saving its adapter: the point has every
    game's figures, and the model is back in train mode afterwards."""
    from src.training.validation import ValidationConfig, validation_point

    model = random_lora(base_dir).train()
    cfg = defaults(ValidationConfig, "train.validation", episodes=2,
                   sampling=sampling(temperature=0.7, top_p=0.95))
    point = validation_point(model, Policy.load(base_dir, device="cpu").tokenizer,
                             ["bargaining", "negotiation"], defaults(GamesConfig, "games"), cfg,
                             step=24, generation=generation)
    assert set(point) == {"step", "mean_reward", "bargaining_reward", "bargaining_rate",
                          "negotiation_reward", "negotiation_rate"}
    assert model.training


@pytest.fixture(scope="module")
def server(base_dir):
    """``vllm serve`` on the base model, on a free loopback port; stopped after the module."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                             "--model", str(base_dir), "--served-model-name", "base",
                             "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}/v1", time.time() + 900
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=5).read()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "vllm serve did not start"
                time.sleep(2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_openai_compatible_opponent_served_by_vllm_equals_the_engine(server, engine, base_dir):
    """The same model behind ``vllm serve`` answers the chat-completions protocol with the
    replies the in-process engine gives (the server applies the same chat template); the
    server batches concurrent requests its own way, so greedy replies may part at near-ties."""
    from src.engines.openai_chat import OpenAIChatPolicy

    chats, policy = opening_chats(4), Policy.load(base_dir, device="cpu")
    served = OpenAIChatPolicy(server, "base", extra_body={"return_token_ids": True}
                              ).generate(chats, sampling(), seed=0)
    for reply in served:  # the server's token ids include the stop token
        if reply.action_ids and reply.action_ids[-1] in policy.end_ids:
            reply.action_ids = reply.action_ids[:-1]
    local = engine.policy().generate(chats, sampling(), seed=0)
    assert_greedy_agrees(policy.model, policy.chat, chats, served, local)
