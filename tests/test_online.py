"""Online RL on the tiny random Llama: one iteration runs end to end, and a run interrupted
between iterations resumes to exactly the adapter and curve of an uninterrupted run."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from src.config import defaults
from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig
from src.intention.clustering import ClusterConfig, cluster_at_chosen_k
from src.intention.labels import write_labels
from src.intention.records import build_game
from src.intention.utterances import GameUtterances, label_name
from src.io_utils import InputError, read_jsonl, write_json, write_jsonl
from src.limits import Limits
from src.policy.policy import Policy
from src.policy.sampling import SamplingConfig
from src.rollout.play import RolloutConfig, self_play
from src.training import reinforce
from src.training.checkpoint import TrainingError
from src.paths import OnlinePaths
from src.training.online import OnlineConfig, retraining_records, train_online
from src.training.reinforce import LoraSettings, build_trainable_model
from src.training.reward_model import MLPSettings, RMConfig, train_reward_model
from synthetic_records import online_settings, records_by_game
from synthetic_rollouts import synthetic_rollouts, write_rollouts

GAMES = ["bargaining", "twenty_questions"]
SHORT_GAMES = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=2),
                       twenty_questions=QuestionsConfig(max_turns=2, candidates=0))
SAMPLING = defaults(SamplingConfig, "rollout.sampling", temperature=1.0, top_p=1.0,
                    max_new_tokens=6, batch_size=8)
RM = defaults(RMConfig, "rm", mlp=defaults(MLPSettings, "rm.mlp", epochs=3))


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, tmp_path_factory) -> OnlinePaths:
    """What train-online reads: an offline adapter, an RM, base rollouts and chosen k."""
    root = tmp_path_factory.mktemp("online-inputs")
    model, tokenizer = build_trainable_model(str(tiny_model_dir), "float32",
                                             defaults(LoraSettings, "train.lora", dropout=0.1), seed=0)
    model.save_pretrained(root / "aria")
    tokenizer.save_pretrained(root / "aria")
    train_reward_model([r for rs in records_by_game(4).values() for r in rs], RM).save(root / "rm")
    policy = Policy.load(tiny_model_dir, device="cpu")
    for game in GAMES:
        rollouts, _ = self_play(game, SHORT_GAMES, policy,
                                defaults(RolloutConfig, "rollout", episodes=2, seed=0, sampling=SAMPLING))
        write_jsonl(root / "rollouts" / f"{game}.jsonl", rollouts)
        roles = rollouts[0]["rewards"]
        write_json(root / "select_k" / f"{game}.json", {"k": dict.fromkeys(roles, 3)})
    return OnlinePaths(start=root / "aria", rm=root / "rm", rollouts=root / "rollouts",
                       chosen_k=root / "select_k", base=str(tiny_model_dir))


def run_paths(inputs: OnlinePaths, out: Path) -> OnlinePaths:
    return OnlinePaths(start=inputs.start, rm=inputs.rm, rollouts=inputs.rollouts,
                       chosen_k=inputs.chosen_k, output=out / "policy",
                       checkpoints=out / "checkpoints", live=out / "live", base=inputs.base)


def online_config(iterations: int, games: list[str]) -> OnlineConfig:
    return defaults(OnlineConfig, "online", games=games, iterations=iterations, episodes=1,
                    seed=500_000, sampling=SAMPLING, max_actions=6, batch_size=4,
                    rm_retrain_every=1, baseline="none")


SETTINGS = online_settings(games=SHORT_GAMES, rm=RM)


def test_one_iteration(inputs, tiny_model_dir, tmp_path):
    paths = run_paths(inputs, tmp_path)
    metrics = train_online(online_config(1, GAMES), SETTINGS, paths)

    assert metrics["completed"] and metrics["iterations"] == 1 and metrics["episodes"] == 2
    assert metrics["records_tokenised_from_text"] == 0  # played online: sampled tokens kept
    final = metrics["final"]
    assert 0 <= final["reward/mean"] <= 1 and 0 <= final["rm_score"] <= 1
    assert set(final) >= {"reward/bargaining", "reward/twenty_questions", "deal_rate/bargaining",
                          "loss", "invalid_move_rate"}
    config = json.loads((paths.output / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    assert (paths.live / "plots" / "metrics" / "reward" / "mean.tsv").exists()
    assert not paths.checkpoints.exists()  # removed once the adapter is exported


def test_resume_equals_uninterrupted(inputs, tmp_path):
    # The RM is retrained after iteration 1: the resumed run must score with the RM that the
    # interrupted call saved, not with the starting one.
    cfg = online_config(2, ["bargaining"])
    whole = run_paths(inputs, tmp_path / "whole")
    train_online(cfg, SETTINGS, whole)

    split = run_paths(inputs, tmp_path / "split")
    partial = train_online(cfg, SETTINGS, split, stop_after_iterations=1)
    assert partial == {"iterations": 1, "completed": False}
    assert (split.checkpoints / "rm-0000001").is_dir() and not split.output.exists()
    resumed = train_online(cfg, SETTINGS, split)
    assert resumed["resumed_from_iteration"] == 1

    a = load_file(whole.output / "adapter_model.safetensors")
    b = load_file(split.output / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    start = load_file(inputs.start / "adapter_model.safetensors")
    assert any((a[k] != start[k]).any() for k in a)  # it did learn something
    curve = "plots/metrics/reward/mean.tsv"
    assert (whole.live / curve).read_text() == (split.live / curve).read_text()
    assert len((whole.live / curve).read_text().splitlines()) == 1 + 2


def test_missing_inputs_fail_before_any_work(inputs, tmp_path):
    paths = run_paths(inputs, tmp_path)
    paths.rm, paths.chosen_k = tmp_path / "no-rm", tmp_path / "no-select-k"
    with pytest.raises(InputError) as err:
        train_online(online_config(2, GAMES), SETTINGS, paths)
    assert str(tmp_path / "no-rm") in str(err.value)
    assert str(tmp_path / "no-select-k" / "twenty_questions.json") in str(err.value)
    assert not paths.checkpoints.exists()


def test_non_finite_loss_stops_with_the_iteration(inputs, tmp_path, monkeypatch):
    def nan_loss(log_probs, weights):
        return (weights * log_probs).mean() * float("nan")

    monkeypatch.setattr(reinforce, "reinforce_loss", nan_loss)
    paths = run_paths(inputs, tmp_path)
    with pytest.raises(TrainingError, match=r"online iteration 1: loss is nan at step 1"):
        train_online(online_config(1, ["bargaining"]), SETTINGS, paths)
    assert not paths.output.exists()


def test_retraining_records_are_builds_records(tmp_path):
    """The reward model retrained online learns from exactly what train-rm learns from: for
    the same episodes and labels, online and build write the same records (same keys, same
    values), and both leave out an empty action and one over the character limit."""
    episodes = synthetic_rollouts("bargaining", 12)
    longest = max(len(t["text"]) for e in episodes for t in e["turns"])
    episodes[0]["turns"][0]["text"] = "  "
    episodes[1]["turns"][1]["text"] = "x" * (longest + 1)
    settings = online_settings(cluster=defaults(ClusterConfig, "cluster", k_max=8),
                               limits=defaults(Limits, "limits", max_utterance_chars=longest))
    chosen_k = {"alice": 4, "bob": 5}
    online = retraining_records("bargaining", episodes, chosen_k, settings)

    utt = GameUtterances.from_episodes("bargaining", episodes)
    labels = cluster_at_chosen_k(utt, chosen_k, settings.cluster)
    write_labels(tmp_path / "labels.json", {"k": chosen_k, "episodes": [
        {"episode_id": e["episode_id"], "labels": [label_name(c) for c in row[:length]]}
        for e, row, length in zip(episodes, labels, utt.lengths)]})
    metrics = build_game(settings.aggregation, "bargaining",
                         write_rollouts(tmp_path / "rollouts.jsonl", episodes),
                         tmp_path / "labels.json", tmp_path / "records.jsonl", settings.limits)

    assert online == read_jsonl(tmp_path / "records.jsonl")
    actions = sum(t["speaker"] != "env" for e in episodes for t in e["turns"])
    assert len(online) == metrics["records"] == actions - 2
    assert metrics["players"]["alice"]["records_left_out"]["empty_action"] == 1
    assert metrics["players"]["bob"]["records_left_out"]["utterance_chars"] == 1
