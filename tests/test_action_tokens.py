"""Training scores the tokens the policy sampled: a reply is decoded and stripped for the game,
and tokenising that text again need not give the same tokens back."""
from contextlib import contextmanager

import torch

from src.intention.aggregation import AggregationConfig
from src.intention.clustering import ClusterConfig, cluster_game
from src.intention.labels import label_game, write_labels
from src.intention.records import build_game
from src.config import defaults
from src.io_utils import write_json, write_jsonl
from src.policy.chat import ChatFormat, tokenised_from_text
from src.rollout.format import read_rollouts
from src.rollout.play import RolloutConfig, self_play
from src.training.records import read_records
from src.training.reinforce import encode_records
from tests.synthetic_records import make_record
from tests.test_sampling_seeds import SAMPLED, TINY_GAMES

GAME = "bargaining"
END_BIAS = 9.0  # on the tiny random model's end-of-turn logit: some replies end, others are cut


@contextmanager
def ending_sometimes(policy):
    """The policy with its end-of-turn token made likely, so rollouts have both kinds of reply."""
    head = policy.model.lm_head
    bias = torch.zeros(head.out_features)
    bias[policy.chat.end_ids[-1]] = END_BIAS
    handle = head.register_forward_hook(lambda module, inputs, logits: logits + bias)
    try:
        yield policy
    finally:
        handle.remove()


def sampled_records(policy, tmp_path) -> list[dict]:
    """Sampled self-play written and read back through cluster, label and build."""
    rollouts, cluster_dir = tmp_path / "rollouts.jsonl", tmp_path / "cluster"
    with ending_sometimes(policy):
        episodes, _ = self_play(GAME, TINY_GAMES, policy,
                                defaults(RolloutConfig, "rollout", episodes=8, sampling=SAMPLED))
    write_jsonl(rollouts, episodes)
    cluster_game(defaults(ClusterConfig, "cluster", k_max=4), GAME, rollouts, cluster_dir)
    write_json(tmp_path / "k.json", {"k": {"alice": 2, "bob": 2}})
    labels = label_game(GAME, rollouts, cluster_dir, tmp_path / "k.json")
    write_labels(tmp_path / "labels.json", labels)
    build_game(defaults(AggregationConfig, "build"), GAME, rollouts, tmp_path / "labels.json",
               tmp_path / "records" / f"{GAME}.jsonl")
    return read_records(GAME, tmp_path / "records")


def test_training_encodes_the_sampled_tokens(tiny_policy, tmp_path):
    records = sampled_records(tiny_policy, tmp_path)
    turns = [t for e in read_rollouts(tmp_path / "rollouts.jsonl") for t in e["turns"]]
    decode = tiny_policy.tokenizer.decode
    assert all(decode(t["action_ids"], skip_special_tokens=True).strip() == t["text"]
               for t in turns if t["speaker"] != "env")
    chat, end = ChatFormat(tiny_policy.tokenizer), tiny_policy.chat.end_ids[-1]
    assert {r["truncated"] for r in records} == {True, False}
    assert tokenised_from_text(records) == 0
    actions = []
    for record, (ids, start) in zip(records, encode_records(records, tiny_policy.tokenizer)):
        assert ids[:start] == chat.prompt_ids(record["messages"])
        assert ids[start:] == record["action_ids"] + ([] if record["truncated"] else [end])
        actions.append(ids[start:])
    # the point of it: some actions' text tokenises to other tokens than those sampled
    assert any(chat.action_ids(r["action"], r["truncated"]) != a for r, a in zip(records, actions))


def test_a_record_without_ids_is_tokenised_from_its_text(tiny_policy):
    chat = tiny_policy.chat
    imported = make_record(action="Is it alive?")
    sampled = {**imported, "action_ids": [1, 2, 3], "truncated": True}
    (text_ids, text_start), (ids, start) = encode_records([imported, sampled],
                                                          tiny_policy.tokenizer)
    assert text_ids[text_start:] == chat.action_ids("Is it alive?") and ids[start:] == [1, 2, 3]
    assert tokenised_from_text([imported, sampled, {**imported, "action_ids": None}]) == 2
