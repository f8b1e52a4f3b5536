"""Grouping rules (docs/method.md §8.1): each rule's keys on a hand-built example, the rules
against each other and against the record fields build wrote before the registry, and the
registry's refusals."""
from dataclasses import replace

import numpy as np
import pytest

from src.config import ConfigError, defaults
from src.intention.aggregation import AggregationConfig, aggregate
from src.intention.grouping import (GROUPINGS, REWARD_FIELDS, GroupingInput, get_grouping,
                                    group_keys, register_grouping, rule_metrics,
                                    similar_text_components)
from src.intention.labels import write_labels
from src.intention.records import build_game, make_records, true_intention_labels
from src.intention.utterances import ActionInstances, GameUtterances, label_name
from src.io_utils import InputError
from src.training.records import read_records, validate_record, variant_weights
from tests.synthetic_records import make_record
from tests.synthetic_rollouts import synthetic_rollouts, write_rollouts

GAMMA = 0.95
RULES = ["intention", "exact", "similarity", "true_intention", "none"]


def episode(index, texts, intentions, reward, game="guess_my_city"):
    """Agent and env alternate; the agent's moves carry their recorded intentions."""
    turns, moves = [], iter(intentions)
    for i, text in enumerate(texts):
        if i % 2 == 0:
            turns.append({"speaker": "agent", "text": text, "valid": True, "move": None,
                          "messages": [{"role": "user", "content": "go"}],
                          "intention": next(moves)})
        else:
            turns.append({"speaker": "env", "text": text, "valid": True, "move": None})
    return {"episode_id": f"e{index}", "game": game, "seed": index, "setup": {}, "turns": turns,
            "outcome": {}, "rewards": {"agent": reward}, "policy": {}}


# Instances in rollout order: 0 E0 first move, 1 E0 guess, 2 E1 first, 3 E1 guess, 4 E2 first,
# 5 E2 guess, 6 E3 first, 7 E3 guess. Only E0 is solved.
EXAMPLE = [
    episode(0, ["Is it big?", "Yes.", "Is it Paris?"], ["size", "guess"], 1.0),
    episode(1, ["Is it big?", "Yes.", "Is it Paris ?"], ["place", "guess"], 0.0),
    episode(2, ["Is it large?", "Yes.", "Is it Rome?"], ["size", "guess"], 0.0),
    episode(3, ["Is it large?", "No.", "Is it Rome?"], ["size", "guess"], 0.0),
]
# The clusters: big/large 0, "Yes." 1, "No." 2, every guess 3.
CLUSTERS = np.array([[0, 1, 3], [0, 1, 3], [0, 1, 3], [0, 2, 3]])
EXPECTED = {
    "intention": [{0, 2, 4, 6}, {1, 3, 5}, {7}],
    "exact": [{0, 2}, {4, 6}, {1}, {3}, {5}, {7}],
    "similarity": [{0, 2}, {4, 6}, {1, 3}, {5}, {7}],  # 0.95: "Paris?" ~ "Paris ?" (0.96)
    "true_intention": [{0, 4, 6}, {2}, {1, 5}, {3}, {7}],  # E1 opened with another intention
    "none": [{n} for n in range(8)],
}


def partition(group: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(group == g).tolist()) for g in np.unique(group)}


def grouping_input(episodes, labels=None, threshold=0.95, game="guess_my_city"):
    utt = GameUtterances.from_episodes(game, episodes)
    instances = ActionInstances.from_utterances(utt, GAMMA)
    if labels is None:
        labels = utt.labels_at_one_cut(np.arange(len(utt.texts)) % 3)
    return GroupingInput(utt, instances, labels, 0, threshold, true_intention_labels(utt))


def example_input(threshold=0.95):
    return grouping_input(EXAMPLE, CLUSTERS, threshold)


@pytest.mark.parametrize("rule", RULES)
def test_each_rule_on_the_hand_built_example(rule):
    assert partition(group_keys(rule, example_input())) == {frozenset(g) for g in EXPECTED[rule]}


def test_rewards_of_the_example():
    inp = example_input()
    raw = inp.instances.raw_reward
    assert raw.tolist() == [0.95, 1.0, 0, 0, 0, 0, 0, 0]
    intention = aggregate(raw, group_keys("intention", inp))
    np.testing.assert_allclose(intention, [0.95 / 4, 1 / 3] * 3 + [0.95 / 4, 0.0])
    similarity = aggregate(raw, group_keys("similarity", inp))
    np.testing.assert_allclose(similarity, [0.475, 0.5, 0.475, 0.5, 0, 0, 0, 0])
    exact = aggregate(raw, group_keys("exact", inp))
    np.testing.assert_allclose(exact, [0.475, 1.0, 0.475, 0, 0, 0, 0, 0])
    for rule in RULES:  # a mean over keys keeps the mean reward, whatever the keys
        assert aggregate(raw, group_keys(rule, inp)).mean() == pytest.approx(raw.mean())


def test_exact_gives_singletons_when_every_history_differs():
    episodes = [episode(i, [f"Question {i}?", "Yes.", "Is it Paris?"], ["a", "b"], i % 2)
                for i in range(5)]
    inp = grouping_input(episodes)
    group = group_keys("exact", inp)
    assert partition(group) == partition(group_keys("none", inp))
    assert rule_metrics(group, inp.instances, inp.utt.roles) == {
        "agent": {"keys": 10, "singleton_share": 1.0}}
    # the clusters here put every first question together: fewer keys, no singletons at turn 1
    metrics = rule_metrics(group_keys("intention", inp), inp.instances, inp.utt.roles)
    assert metrics["agent"]["keys"] < 10 and metrics["agent"]["singleton_share"] < 1.0


@pytest.mark.parametrize("game", ["bargaining", "twenty_questions", "guess_my_city"])
def test_similarity_at_threshold_one_is_exact_and_a_low_threshold_merges(game):
    episodes = synthetic_rollouts(game, 40)
    exact = partition(group_keys("exact", grouping_input(episodes, game=game)))
    assert partition(group_keys("similarity", grouping_input(episodes, threshold=1.0,
                                                             game=game))) == exact
    loose = partition(group_keys("similarity", grouping_input(episodes, threshold=0.3,
                                                              game=game)))
    assert len(loose) < len(exact)
    assert all(any(g <= m for m in loose) for g in exact)  # merging only joins exact groups
    hand = example_input(threshold=0.7)  # big ~ large (0.73) too, guesses of Paris and Rome not
    assert partition(group_keys("similarity", hand)) == {
        frozenset(g) for g in ([0, 2, 4, 6], [1, 3], [5], [7])}


def test_similar_texts_merge_transitively_within_one_speaker():
    texts = [("alice", "abcdefghij"), ("alice", "abcdefghiX"), ("alice", "abcdefghYX"),
             ("bob", "abcdefghij"), ("alice", "zzzzzzzzzz")]
    # ratio 0.9 between neighbours, 0.8 between the ends: one component through the middle
    assert similar_text_components(texts, 0.9).tolist() == [0, 0, 0, 1, 2]
    assert similar_text_components(texts, 1.0).tolist() == [0, 1, 2, 3, 4]


def test_none_is_raw_and_intention_is_the_reward_build_wrote_before():
    utt = GameUtterances.from_episodes("bargaining", synthetic_rollouts("bargaining", 40))
    labels = utt.labels_at_one_cut(np.arange(len(utt.texts)) % 4)
    cfg = defaults(AggregationConfig, "build")
    made = make_records(utt, labels, cfg)
    today_reward, today_group = made.instances.aggregated(labels, cfg)
    inp = GroupingInput(utt, made.instances, labels, cfg.history_window,
                        cfg.similarity_threshold, None)
    np.testing.assert_array_equal(group_keys("intention", inp), today_group)
    group, rewards = made.by_rule["intention"]
    np.testing.assert_array_equal(rewards, today_reward)
    np.testing.assert_array_equal(made.by_rule["none"][1], made.instances.raw_reward)
    assert made.by_rule["true_intention"] is None  # no recorded intentions
    assert [r["reward"] for r in made.records] == today_reward[made.kept].tolist()
    assert [r["raw_reward"] for r in made.records] == made.instances.raw_reward[made.kept].tolist()


def test_history_window_cuts_every_label_rule():
    inp = replace(example_input(), window=1)
    # only the action itself: the guesses of Paris (exact text differs) stay apart, Rome joins
    assert partition(group_keys("exact", inp)) == {
        frozenset(g) for g in ([0, 2], [4, 6], [1], [3], [5, 7])}


def write_example(tmp_path, episodes, labels, game="guess_my_city"):
    utt = GameUtterances.from_episodes(game, episodes)
    write_labels(tmp_path / "labels.json", {"k": {role: 4 for role in utt.roles}, "episodes": [
        {"episode_id": e["episode_id"], "labels": [label_name(c) for c in row[:n]]}
        for e, row, n in zip(episodes, labels, utt.lengths)]})
    return write_rollouts(tmp_path / "rollouts.jsonl", episodes), tmp_path / "labels.json"


def test_build_writes_one_reward_per_rule_and_its_key_counts(tmp_path):
    rollouts, labels = write_example(tmp_path, EXAMPLE, CLUSTERS)
    metrics = build_game(defaults(AggregationConfig, "build"), "guess_my_city", rollouts, labels,
                         tmp_path / "records" / "guess_my_city.jsonl")
    records = read_records("guess_my_city", tmp_path / "records")
    inp = example_input()
    for rule in RULES:
        expected = aggregate(inp.instances.raw_reward, group_keys(rule, inp))
        assert [r[REWARD_FIELDS[rule]] for r in records] == pytest.approx(expected.tolist())
    assert metrics["similarity_threshold"] == 0.95
    assert metrics["grouping_rules"]["exact"] == {"agent": {"keys": 6, "singleton_share": 0.5}}
    assert metrics["grouping_rules"]["none"] == {"agent": {"keys": 8, "singleton_share": 1.0}}
    assert metrics["grouping"]["agent"]["true_intentions"]["keys"] == 5  # diagnostics as before
    for variant, field in (("exact", "reward_exact"), ("similarity", "reward_similarity")):
        assert variant_weights(records, variant) == (records, [r[field] for r in records])


def test_build_writes_only_the_rules_listed_and_rollouts_without_intentions(tmp_path):
    bare = [{**e, "turns": [{k: v for k, v in t.items() if k != "intention"} for t in e["turns"]]}
            for e in EXAMPLE]
    rollouts, labels = write_example(tmp_path, bare, CLUSTERS)
    cfg = defaults(AggregationConfig, "build", grouping=["intention", "exact", "true_intention"])
    metrics = build_game(cfg, "guess_my_city", rollouts, labels,
                         tmp_path / "r" / "guess_my_city.jsonl")
    records = read_records("guess_my_city", tmp_path / "r")
    assert {"reward", "raw_reward", "reward_exact"} <= set(records[0])
    assert not {"reward_similarity", "reward_true"} & set(records[0])
    assert list(metrics["grouping_rules"]) == ["intention", "exact", "true_intention"]
    assert metrics["grouping_rules"]["true_intention"] is None and metrics["grouping"] is None
    with pytest.raises(InputError, match="8 of 8 records have no 'reward_similarity' "
                                         r"\(built without the grouping rule 'similarity'\)"):
        variant_weights(records, "similarity")


def test_records_without_the_new_fields_still_read_and_bad_ones_fail():
    old = make_record()
    validate_record(old, "old.jsonl:1")
    validate_record({**old, "reward_exact": 0.25, "reward_similarity": None}, "new.jsonl:1")
    with pytest.raises(InputError, match="field 'reward_exact' should be a number in"):
        validate_record({**old, "reward_exact": 1.5}, "bad.jsonl:1")
    with pytest.raises(InputError, match="field 'reward_similarity' should be int/float"):
        validate_record({**old, "reward_similarity": "high"}, "bad.jsonl:2")


def test_the_registry_refuses_unknown_names_in_one_line():
    with pytest.raises(KeyError, match=r"unknown grouping rule 'gigpo'; known: \[") as err:
        get_grouping("gigpo")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        defaults(AggregationConfig, "build", grouping=["intention", "gigpo"])
    assert "params.yaml: build.grouping: unknown rule 'gigpo'; known: [" in err.value.message
    assert "\n" not in err.value.message
    with pytest.raises(ConfigError, match="build.similarity_threshold must be in"):
        defaults(AggregationConfig, "build", similarity_threshold=0.0)
    with pytest.raises(ConfigError, match="build.grouping lists a rule twice"):
        defaults(AggregationConfig, "build", grouping=["exact", "exact"])
    with pytest.raises(ValueError, match="registered twice"):
        register_grouping("exact")(lambda inp: None)
    assert list(GROUPINGS)[:len(RULES)] == RULES
    assert defaults(AggregationConfig, "build").grouping == RULES  # params.yaml runs them all

