"""Evaluation on the tiny random Llama: well-formed metrics, and the policy really plays both
seats (every move of the evaluated seat is the evaluated model's greedy reply)."""
import pytest

from src.config import defaults
from src.engines import EngineConfig, Generation
from src.evaluation.evaluate import EvaluateConfig, evaluate_game
from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig
from src.policy.policy import GenerationStats, Policy
from src.policy.sampling import SamplingConfig

HF = Generation(defaults(EngineConfig, "rollout.engine"), "models/base", device="cpu")
GREEDY = defaults(SamplingConfig, "rollout.sampling", temperature=0.0, max_new_tokens=8, batch_size=8)
SHORT_GAMES = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=2),
                       twenty_questions=QuestionsConfig(max_turns=2, candidates=0))


class ScriptedPolicy(Policy):
    """Always says the same thing, so every turn shows which policy played it."""

    def __init__(self, name: str):
        self.name, self.stats = name, GenerationStats()

    def generate(self, conversations, sampling, seed, cache=None, keys=None):
        return [f"I am {self.name}"] * len(conversations)


def is_interval(rate: dict) -> bool:
    return 0 <= rate["low"] <= rate["rate"] <= rate["high"] <= 1 and rate["n"] >= rate["successes"]


def test_two_player_policy_plays_both_seats(monkeypatch, tmp_path):
    monkeypatch.setattr(Policy, "load", classmethod(
        lambda cls, path, dtype="float32", device="auto", name=None, base=None:
        ScriptedPolicy(name)))
    for folder in ("candidate", "opponent"):
        (tmp_path / folder).mkdir()
    cfg = defaults(EvaluateConfig, "evaluate", policies={"candidate": str(tmp_path / "candidate")},
                   opponent=str(tmp_path / "opponent"), episodes=2, sampling=GREEDY, comparisons=[])
    records, metrics = evaluate_game("bargaining", SHORT_GAMES, cfg, HF)

    assert [r["evaluation"]["seat"] for r in records] == ["alice", "bob"]
    assert records[0]["setup"] == records[1]["setup"]  # the same setup, mirrored
    for record in records:
        seat = record["evaluation"]["seat"]
        assert record["policy"]["models"][seat] == str(tmp_path / "candidate")
        for turn in record["turns"]:
            plays = "candidate" if turn["speaker"] == seat else "opponent"
            assert turn["text"] == f"I am {tmp_path / plays}", (seat, turn)

    m = metrics["policies"]["candidate"]
    assert metrics["primary"] == "win_rate" and metrics["policy_order"] == ["candidate"]
    assert m["episodes"] == 2
    for rate in ("win_rate", "tie_rate", "deal_rate", "invalid_move_rate"):
        assert is_interval(m[rate]), rate
    # nothing parses: every move of the evaluated seat is invalid, no deal, both get 0 (a tie)
    assert m["invalid_move_rate"]["rate"] == 1.0
    assert m["invalid_move_rate"]["n"] == sum(t["speaker"] == r["evaluation"]["seat"]
                                              for r in records for t in r["turns"])
    assert m["tie_rate"]["successes"] == 2 and m["deal_rate"]["successes"] == 0
    assert m["mean_payoff_share"] == {"mean": None, "n": 0}


def test_single_agent_metrics(tiny_model_dir):
    cfg = defaults(EvaluateConfig, "evaluate",
                   policies={"base": str(tiny_model_dir), "copy": str(tiny_model_dir)},
                   episodes=2, seed=1_000_000, sampling=GREEDY, comparisons=[])
    records, metrics = evaluate_game("twenty_questions", SHORT_GAMES, cfg, HF)

    assert len(records) == 4 and {r["evaluation"]["seat"] for r in records} == {"agent"}
    assert [r["seed"] for r in records] == [1_000_000, 1_000_001] * 2  # fixed targets
    assert metrics["primary"] == "success_rate" and metrics["opponent"] is None
    for m in metrics["policies"].values():
        assert is_interval(m["success_rate"]) and m["success_rate"]["n"] == 2
        assert is_interval(m["invalid_move_rate"])
        assert "win_rate" not in m
    # one folder is one model: both names saw the same greedy episodes, and each distinct
    # prompt was generated once (the opening question does not depend on the target)
    assert metrics["policies"]["base"] == metrics["policies"]["copy"]
    agent_turns = sum(t["speaker"] == "agent" for r in records for t in r["turns"])
    assert metrics["prompts_generated"] < agent_turns


def test_episodes_must_be_even():
    from src.config import ConfigError

    with pytest.raises(ConfigError, match="even"):
        defaults(EvaluateConfig, "evaluate", episodes=3)
    with pytest.raises(ConfigError, match="policies"):
        defaults(EvaluateConfig, "evaluate", policies={}, comparisons=[])


def test_primary_comparison_plays_more_of_the_same_list():
    """The primary comparison's policies play more episodes on the games with signal; every
    other policy plays the first of the same list, so all comparisons stay paired."""
    from src.evaluation.evaluate import PrimaryComparison, schedule

    primary = PrimaryComparison(policies=["aria", "raw"], episodes=6, games=["bargaining"])
    cfg = defaults(EvaluateConfig, "evaluate", episodes=2, primary_comparison=primary)
    counts = cfg.episodes_per_policy("bargaining")
    assert counts["aria"] == counts["raw"] == cfg.primary_comparison.episodes
    assert counts["base"] == counts["bc"] == 2
    assert set(cfg.episodes_per_policy("negotiation").values()) == {2}
    plan = schedule("bargaining", SHORT_GAMES, {"long": 6, "short": 2}, 1000000)
    long = [(m.game.seed, m.seat) for m in plan if m.policy == "long"]
    short = [(m.game.seed, m.seat) for m in plan if m.policy == "short"]
    assert len(long) == 6 and short == long[:2]
    assert short[0][0] == short[1][0] and {s for _, s in short} == {"alice", "bob"}
