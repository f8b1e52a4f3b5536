"""Clustering, select-k, labels and build: exactness, determinism and bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage

from src.config import defaults
from src.intention.aggregation import AggregationConfig
from src.intention.clustering import (ClusterConfig, cut_every_k, relabel_by_first_appearance, tree_cuts,
                            weighted_linkage)
from src.intention.select_k import choose_split_k, k_sweep
from src.intention.utterances import ActionInstances, GameUtterances
from tests.synthetic_rollouts import synthetic_rollouts, write_rollouts
from tests.dvc_helpers import run_stage

ROOT = Path(__file__).resolve().parents[1]
K_VALUES = np.arange(2, 41)


def unit_vectors(n, dim=12, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scipy_partitions(tree, k_values):
    return np.array([relabel_by_first_appearance(fcluster(tree, k, "maxclust")) for k in k_values])


@pytest.mark.parametrize("method", ["ward", "average"])
def test_exact_path_equals_scipy_linkage_and_fcluster(method):
    x = unit_vectors(150)
    cuts = tree_cuts(x, K_VALUES, defaults(ClusterConfig, "cluster", linkage=method))
    reference = linkage(x, "ward") if method == "ward" else linkage(x, "average", metric="cosine")
    assert cuts.method == "exact"
    np.testing.assert_array_equal(cuts.labels, scipy_partitions(reference, K_VALUES))


@pytest.mark.parametrize("method", ["ward", "average"])
def test_weighted_linkage_with_unit_weights_is_scipy(method):
    x = unit_vectors(120, seed=1)
    reference = linkage(x, "ward") if method == "ward" else linkage(x, "average", metric="cosine")
    ours = weighted_linkage(x, np.ones(len(x)), method)
    np.testing.assert_allclose(ours[:, 2], reference[:, 2], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(cut_every_k(ours, K_VALUES), scipy_partitions(reference, K_VALUES))


@pytest.mark.parametrize("method", ["ward", "average"])
def test_weights_act_like_repeated_points(method):
    """A point of weight w merges like w copies of it (the copies first join at height 0)."""
    x = unit_vectors(40, seed=2)
    weights = np.random.default_rng(3).integers(1, 4, len(x))
    copies = np.repeat(x, weights, axis=0)
    ks = np.arange(2, 30)
    expanded = cut_every_k(weighted_linkage(copies, np.ones(len(copies)), method), ks)
    first_copy = np.concatenate([[0], np.cumsum(weights)[:-1]])
    np.testing.assert_array_equal(cut_every_k(weighted_linkage(x, weights, method), ks),
                                  expanded[:, first_copy])


def test_two_level_path_gives_exactly_k_canonical_clusters():
    centres = unit_vectors(30, dim=16, seed=4)
    rng = np.random.default_rng(5)
    x = centres[rng.integers(0, 30, 3000)] + 0.05 * rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cfg = defaults(ClusterConfig, "cluster", exact_max_utterances=1000, micro_clusters=200, k_max=60)
    cuts = tree_cuts(x, np.arange(2, 61), cfg)
    assert cuts.method == "two-level" and cuts.labels.shape == (59, 3000)
    for k, row in zip(cuts.k_values, cuts.labels):
        assert len(np.unique(row)) == k
        np.testing.assert_array_equal(row, relabel_by_first_appearance(row))
    again = tree_cuts(x, np.arange(2, 61), cfg)
    np.testing.assert_array_equal(again.labels, cuts.labels)


def test_split_score_picks_first_k_after_which_rewards_stop_moving():
    deltas = np.array([0.3, 0.2, 0.05, 0.001, 0.0, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0])  # k = 2..12
    ks = np.arange(2, 14)
    assert choose_split_k(ks, deltas, epsilon=0.01, tau=3) == (8, True)  # 5..8 fails at k=7
    assert choose_split_k(ks, deltas, epsilon=0.01, tau=6) == (13, False)  # never 7 in a row
    assert choose_split_k(ks, deltas, epsilon=0.1, tau=1) == (4, True)


def test_k_sweep_on_a_constructed_game():
    """Alice's tough lines win, her fair lines draw: cutting them apart (k=3) moves rewards
    by 0.25 on average and brings back their spread; the finer cut (k=4) separates two
    paraphrases and moves nothing."""
    def ep(i, text, reward):
        turn = {"speaker": "alice", "text": text, "valid": True, "move": None,
                "messages": [{"role": "user", "content": "go"}]}
        return {"episode_id": f"e{i}", "game": "bargaining", "seed": i, "setup": {},
                "turns": [turn], "outcome": {}, "rewards": {"alice": reward}, "policy": {}}

    episodes = [ep(0, "tough", 1.0), ep(1, "tough!", 1.0), ep(2, "fair", 0.5), ep(3, "fair", 0.5)]
    utt = GameUtterances.from_episodes("bargaining", episodes)
    instances = ActionInstances.from_utterances(utt, 0.95)
    per_k = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 2]])  # texts: tough, tough!, fair; k = 2, 3, 4
    deltas, variances = k_sweep(utt, instances, per_k, defaults(AggregationConfig, "build"))
    np.testing.assert_allclose(deltas["alice"], [0.25, 0.0])
    np.testing.assert_allclose(variances["alice"], [0.0, 0.0625, 0.0625])
    assert choose_split_k(np.array([2, 3, 4]), deltas["alice"], 0.01, 0) == (3, True)


# -- the stages, in process --------------------------------------------------------------
GAMES = ("bargaining", "twenty_questions", "guess_my_city")
STAGES = ("cluster", "select_k", "label", "build")


def run_game_stage(name, game, monkeypatch, capsys, seed=0):
    """Run ``python -m stages.<name> --game <game> --seed <seed>`` in this process: (exit
    code, stderr)."""
    return run_stage(name, ["--game", game, "--seed", str(seed)], monkeypatch, capsys)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_all(game, monkeypatch, capsys):
    for name in STAGES:
        code, err = run_game_stage(name, game, monkeypatch, capsys)
        assert code == 0, err


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[len(root.parts)] in ("data", "plots", "metrics")}


def test_stages_are_deterministic_and_outputs_consistent(workdir, monkeypatch, capsys):
    for game in GAMES:
        write_rollouts(workdir / f"data/rollouts/s0/{game}.jsonl", synthetic_rollouts(game, 50))
        run_all(game, monkeypatch, capsys)
    first = tree_bytes(workdir)
    cluster_metrics = {k for k in first if k.startswith("metrics/cluster/s0/")}
    for game in GAMES:
        run_all(game, monkeypatch, capsys)
    second = tree_bytes(workdir)
    assert first.keys() == second.keys()
    changed = {k for k in first if first[k] != second[k]}
    assert changed <= cluster_metrics  # only the wall time may differ

    records = [json.loads(line) for line in
               (workdir / "data/records/s0/twenty_questions.jsonl").read_text().splitlines()]
    rollouts = synthetic_rollouts("twenty_questions", 50)
    assert len(records) == sum(t["speaker"] == "agent" for e in rollouts for t in e["turns"])
    assert set(records[0]) == {"episode_id", "game", "player", "turn", "position", "messages",
                               "action", "action_ids", "valid", "truncated", "reward", "raw_reward",
                               "episode_reward", "won", "key_size", "reward_exact",
                               "reward_similarity"}  # no reward_true: no recorded intentions
    labels = json.loads((workdir / "data/labels/s0/twenty_questions.json").read_text())
    answers = [label for e in labels["episodes"] for label in e["labels"][1::2]]
    assert set(answers) <= {"yes", "no", "unknown"}
    build = json.loads((workdir / "metrics/build/s0/bargaining.json").read_text())
    for player in ("alice", "bob"):
        stats = build["players"][player]
        assert stats["aggregated_variance"] <= stats["raw_variance"]
        assert stats["records_written"] == stats["action_instances"]


def good_line(game="bargaining"):
    return json.dumps(synthetic_rollouts(game, 1)[0])


@pytest.mark.parametrize("second_line, expected", [
    ("{not json", "r.jsonl:2: not valid JSON"),
    (json.dumps({k: v for k, v in json.loads(good_line()).items() if k != "turns"}),
     "r.jsonl:2: missing field 'turns'"),
    (json.dumps({**json.loads(good_line()), "rewards": "alice"}),
     "r.jsonl:2: field 'rewards' should be dict"),
    (json.dumps({**json.loads(good_line()), "game": "negotiation"}),
     "r.jsonl:2: field 'game' is 'negotiation'"),
    (good_line(), "r.jsonl:2: field 'episode_id' 'bargaining-000000' repeats"),
])
def test_bad_rollout_line_names_file_line_field(workdir, monkeypatch, capsys, second_line, expected):
    path = Path("data/rollouts/s0/bargaining.jsonl")
    path.parent.mkdir(parents=True)
    path.write_text(good_line() + "\n" + second_line + "\n")
    code, err = run_game_stage("cluster", "bargaining", monkeypatch, capsys)
    assert code != 0 and expected.replace("r.jsonl", str(path)) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_twenty_questions_answer_is_named(workdir, monkeypatch, capsys):
    episode = synthetic_rollouts("twenty_questions", 1)[0]
    episode["turns"][1]["move"] = {"answer": "maybe"}
    write_rollouts(Path("data/rollouts/s0/twenty_questions.jsonl"), [episode])
    code, err = run_game_stage("cluster", "twenty_questions", monkeypatch, capsys)
    assert code != 0 and ":1: turns[1].move.answer is 'maybe'" in err


def test_empty_file_and_single_utterance_game_are_clear_errors(workdir, monkeypatch, capsys):
    path = Path("data/rollouts/s0/bargaining.jsonl")
    path.parent.mkdir(parents=True)
    path.write_text("")
    code, err = run_game_stage("cluster", "bargaining", monkeypatch, capsys)
    assert code != 0 and "empty file" in err and "Traceback" not in err

    episodes = synthetic_rollouts("guess_my_city", 3)
    for e in episodes:
        for turn in e["turns"]:
            turn["text"] = "Same words."
    write_rollouts(Path("data/rollouts/s0/guess_my_city.jsonl"), episodes)
    code, err = run_game_stage("cluster", "guess_my_city", monkeypatch, capsys)
    assert code != 0 and "only 1 unique utterance(s) to cluster" in err


def test_stale_labels_are_refused(workdir, monkeypatch, capsys):
    write_rollouts(Path("data/rollouts/s0/bargaining.jsonl"), synthetic_rollouts("bargaining", 30))
    run_all("bargaining", monkeypatch, capsys)
    labels = json.loads(Path("data/labels/s0/bargaining.json").read_text())
    labels["episodes"][3]["labels"].append(0)
    Path("data/labels/s0/bargaining.json").write_text(json.dumps(labels))
    code, err = run_game_stage("build", "bargaining", monkeypatch, capsys)
    assert code != 0 and "episodes[3]: field 'labels' should have" in err


def test_select_k_methods_and_left_out_records(workdir, monkeypatch, capsys):
    from src.intention.select_k import SelectKConfig, select_k

    episodes = synthetic_rollouts("bargaining", 40)
    episodes[0]["turns"][0]["text"] = "  "
    write_rollouts(Path("data/rollouts/s0/bargaining.jsonl"), episodes)
    run_all("bargaining", monkeypatch, capsys)
    build = json.loads(Path("metrics/build/s0/bargaining.json").read_text())["players"]["alice"]
    assert build["records_left_out"] == {"empty_action": 1, "no_messages": 0,
                                         "utterance_chars": 0, "prompt_chars": 0}
    assert build["records_written"] == build["action_instances"] - 1

    def chosen(**cfg):
        return select_k(defaults(SelectKConfig, "select_k", **cfg),
                        defaults(AggregationConfig, "build"), "bargaining",
                        Path("data/rollouts/s0/bargaining.jsonl"), Path("data/cluster/s0/bargaining"),
                        Path("plots/select_k/s0/bargaining"), Path("plots/select_k/s0/bargaining.png"))

    assert chosen(method="fixed", fixed_k=3)["k"] == {"alice": 3, "bob": 3}
    clamped = chosen(method="fixed", fixed_k=500)
    assert set(clamped["k"].values()) == {clamped["k_max"]} and "fixed_k = 500" in clamped["note"]
    by_silhouette = chosen(method="silhouette")
    assert set(by_silhouette["k"].values()) == {by_silhouette["silhouette"]["k"]}
    strict = chosen(epsilon=1e-9, tau=2)
    assert strict["k"]["alice"] == strict["k_max"] and not strict["split_score"]["alice"]["qualified"]
    assert "no k qualifies for alice" in strict["note"]
