"""Reward aggregation (docs/method.md §8): the worked example, and properties on random
episodes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.config import defaults
from src.intention.aggregation import (PAD, AggregationConfig, aggregate, discounted_rewards, group_index,
                             history_key_ids, variance)
from src.intention.utterances import ActionInstances, GameUtterances

GAMMA = 0.95


def episode(game, index, speakers, texts, rewards):
    turns = [{"speaker": s, "text": t, "valid": True, "move": None,
              **({"messages": [{"role": "user", "content": "go"}]} if s != "env" else {})}
             for s, t in zip(speakers, texts)]
    return {"episode_id": f"e{index}", "game": game, "seed": index, "setup": {}, "turns": turns,
            "outcome": {}, "rewards": rewards, "policy": {}}


def own_text_labels(utt):
    """Every unique text its own cluster: labels are the utterance texts themselves."""
    return utt.labels_at_one_cut(np.arange(len(utt.texts)))


def aggregated(episodes, game="guess_my_city", window=0, labels=None):
    utt = GameUtterances.from_episodes(game, episodes)
    instances = ActionInstances.from_utterances(utt, GAMMA)
    cfg = defaults(AggregationConfig, "build", gamma=GAMMA, history_window=window)
    rewards, group = instances.aggregated(own_text_labels(utt) if labels is None else labels(utt), cfg)
    return utt, instances, rewards, group


def test_spec8_worked_example():
    """A: 1 x 2 solved; B: 1 x 3 y 2 failed; C: 1 x 2 failed (digits: actions, letters: answers)."""
    single = ["agent", "env"] * 3
    episodes = [episode("guess_my_city", 0, single, ["1", "x", "2"], {"agent": 1.0}),
                episode("guess_my_city", 1, single, ["1", "x", "3", "y", "2"], {"agent": 0.0}),
                episode("guess_my_city", 2, single, ["1", "x", "2"], {"agent": 0.0})]
    _, instances, rewards, group = aggregated(episodes)
    assert instances.raw_reward.tolist() == [0.95, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert instances.turn.tolist() == [1, 2, 1, 2, 3, 1, 2]
    expected = [0.95 / 3, 0.5, 0.95 / 3, 0.0, 0.0, 0.95 / 3, 0.5]
    np.testing.assert_allclose(rewards, expected)
    assert round(rewards[0], 4) == 0.3167
    assert np.bincount(group)[group].tolist() == [3, 2, 3, 1, 1, 3, 2]


def test_players_never_share_a_key():
    """Same labels before and at the action, different players: separate keys."""
    speakers = ["alice", "bob"]
    episodes = [episode("bargaining", 0, speakers, ["x", "x"], {"alice": 1.0, "bob": 0.0})]
    _, _, rewards, group = aggregated(episodes, game="bargaining", labels=lambda u: np.zeros((1, 2), int))
    assert len(set(group)) == 2 and rewards.tolist() == [1.0, 0.0]


def test_history_window_keys_only_last_utterances():
    labels = np.array([[5, 1, 2], [6, 1, 2]])
    full, last2 = history_key_ids(labels), history_key_ids(labels, window=2)
    assert full[0, 2] != full[1, 2]
    assert last2[0, 2] == last2[1, 2] and last2[0, 0] != last2[1, 0]


def test_discounting_and_registry():
    np.testing.assert_allclose(discounted_rewards(1.0, 3, 0.5), [0.25, 0.5, 1.0])
    assert discounted_rewards(1.0, 0, 0.5).size == 0
    assert aggregate([1.0, 0.0, 0.5], group_index(["a", "a", "b"]), "none").tolist() == [1.0, 0.0, 0.5]
    assert aggregate([1.0, 0.0, 0.5], group_index(["a", "a", "b"])).tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(KeyError, match="unknown aggregator"):
        aggregate([1.0], np.array([0]), "median")


def test_group_index_numbers_by_first_appearance():
    assert group_index(np.array([7, 3, 7, 1])).tolist() == [0, 1, 0, 2]
    assert group_index(["b", "a", "b"], [1, 1, 2]).tolist() == [0, 1, 2]


@st.composite
def random_game(draw):
    """Random episodes of a two-player or a single-agent game, texts from a tiny alphabet."""
    two_player = draw(st.booleans())
    episodes = []
    for index in range(draw(st.integers(1, 12))):
        n = draw(st.integers(1, 8))
        speakers = (["alice", "bob"] if two_player else ["agent", "env"]) * n
        texts = draw(st.lists(st.sampled_from("abcd"), min_size=n, max_size=n))
        reward = st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1)
        rewards = ({"alice": draw(reward), "bob": draw(reward)} if two_player
                   else {"agent": draw(reward)})
        episodes.append(episode("bargaining" if two_player else "guess_my_city", index,
                                speakers[:n], texts, rewards))
    return episodes, "bargaining" if two_player else "guess_my_city"


@settings(max_examples=150, deadline=None)
@given(random_game(), st.integers(0, 3))
def test_mean_preserved_and_variance_never_larger(game_episodes, window):
    episodes, game = game_episodes
    utt, instances, rewards, _ = aggregated(episodes, game, window)
    for p in range(len(utt.roles)):
        mine = instances.of_role(p)
        raw = instances.raw_reward[mine]
        assert rewards[mine].sum() == pytest.approx(raw.sum())
        assert variance(rewards[mine]) <= variance(raw) + 1e-12


@settings(max_examples=100, deadline=None)
@given(random_game())
def test_every_utterance_its_own_cluster_gives_raw_rewards(game_episodes):
    episodes, game = game_episodes

    def unique_per_utterance(utt):
        labels = np.arange(utt.text_index.size).reshape(utt.text_index.shape)
        return np.where(utt.text_index == PAD, PAD, labels)

    _, instances, rewards, _ = aggregated(episodes, game, labels=unique_per_utterance)
    np.testing.assert_allclose(rewards, instances.raw_reward)
