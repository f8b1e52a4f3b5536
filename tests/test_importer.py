"""Importing the original ARIA release's rollout files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.rollout.importer import import_original
from src.io_utils import InputError, write_jsonl
from src.rollout.format import read_rollouts

ROOT = Path(__file__).resolve().parents[1]


def negotiation_episode(**changes):
    row = {"player_1_name": "Alice", "product_price_order": 100,
           "player_1_system_prompt": "\nYou are Alice, selling a product.\n",
           "player_2_system_prompt": "\nYou are Bob, buying a product.\n",
           "alice_reward": 0.5, "bob_reward": 0.5, "alice_gain": 0, "bob_gain": 0,
           "alice_actions": ["Price is $110.", "I can do $108.", "I'll sell to John."],
           "bob_actions": ["I offer $105.", "I offer $102."],
           "alice_ids": [0, 2, 4], "bob_ids": [1, 3],
           "alice_action_embeddings": [[0.1, 0.2]] * 3, "bob_actions_embeddings": [[0.1]] * 2}
    row.update(changes)
    return row


def twenty_questions_episode(**changes):
    row = {"word": "cat", "actions": ["Is it alive?", "Is it a dog?", "Is it a cat?"],
           "obs": ["Yes.", "I don't know.", "No, but yes: you win."], "reward": [-1, -1, 0],
           "action_embeddings": [[0.0]] * 3, "obs_embeddings": [[0.0]] * 3}
    row.update(changes)
    return row


def test_two_player_episode_becomes_a_valid_rollout(tmp_path):
    source = tmp_path / "negotiation.json"
    source.write_text(json.dumps([negotiation_episode(), negotiation_episode(alice_reward=1.0, bob_reward=0.0)],
                                 indent=2))
    episodes = list(import_original("negotiation", [source]))
    out = tmp_path / "r.jsonl"
    write_jsonl(out, episodes)
    assert [e["episode_id"] for e in read_rollouts(out)] == ["negotiation-orig-000000",
                                                            "negotiation-orig-000001"]
    first = episodes[0]
    assert [t["speaker"] for t in first["turns"]] == ["alice", "bob", "alice", "bob", "alice"]
    assert first["rewards"] == {"alice": 0.5, "bob": 0.5}
    assert first["outcome"] == {"alice_gain": 0, "bob_gain": 0}
    assert first["setup"] == {"player_1_name": "Alice", "product_price_order": 100}
    bob_second = first["turns"][3]["messages"]
    assert bob_second == [{"role": "system", "content": "You are Bob, buying a product."},
                          {"role": "user", "content": "Price is $110."},
                          {"role": "assistant", "content": "I offer $105."},
                          {"role": "user", "content": "I can do $108."}]


def test_alternation_without_ids(tmp_path):
    row = negotiation_episode()
    del row["alice_ids"], row["bob_ids"]
    source = tmp_path / "n.jsonl"
    source.write_text(json.dumps(row) + "\n")
    turns = next(import_original("bargaining", [source]))["turns"]
    assert [t["text"] for t in turns] == ["Price is $110.", "I offer $105.", "I can do $108.",
                                          "I offer $102.", "I'll sell to John."]


def test_single_agent_answers_and_solved_flag(tmp_path):
    source = tmp_path / "tq.jsonl"
    rows = [twenty_questions_episode(), twenty_questions_episode(reward=-1),
            twenty_questions_episode(reward=[-1, -1, -1])]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    solved, failed_scalar, failed_steps = import_original("twenty_questions", [source])
    assert solved["rewards"] == {"agent": 1.0} and solved["outcome"] == {"solved": True}
    assert failed_scalar["rewards"] == failed_steps["rewards"] == {"agent": 0.0}
    answers = [t["move"]["answer"] for t in solved["turns"] if t["speaker"] == "env"]
    assert answers == ["yes", "unknown", "no"]
    assert solved["setup"] == {"word": "cat"}
    last_question = solved["turns"][4]["messages"]
    assert [m["role"] for m in last_question] == ["system", "assistant", "user", "assistant", "user"]
    city = next(import_original("guess_my_city", [source]))
    assert all(t["move"] is None for t in city["turns"] if t["speaker"] == "env")


@pytest.mark.parametrize("game, row, expected", [
    ("negotiation", negotiation_episode(alice_actions="hi"), "field 'alice_actions' should be list"),
    ("negotiation", negotiation_episode(bob_reward=3), "field 'bob_reward' should be in [0, 1]"),
    ("negotiation", {k: v for k, v in negotiation_episode().items() if k != "player_2_system_prompt"},
     "missing field 'player_2_system_prompt'"),
    ("negotiation", negotiation_episode(bob_ids=[1, 1]), "fields 'alice_ids'/'bob_ids'"),
    ("twenty_questions", twenty_questions_episode(reward=[-1, 5]), "field 'reward' should be -1 or 0"),
    ("twenty_questions", twenty_questions_episode(actions=["Is it?", 7]), "field 'actions[1]' should be str"),
])
def test_bad_episode_names_file_line_field(tmp_path, game, row, expected):
    source = tmp_path / "in.jsonl"
    good = negotiation_episode() if game == "negotiation" else twenty_questions_episode()
    source.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as err:
        list(import_original(game, [source]))
    assert str(err.value).startswith(f"{source}:3: ") and expected in str(err.value)


def test_json_list_errors_name_the_line_of_the_episode(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps([negotiation_episode(), negotiation_episode(bob_reward="x")], indent=1))
    with pytest.raises(InputError) as err:
        list(import_original("negotiation", [source]))
    starts = [n for n, line in enumerate(source.read_text().splitlines(), 1) if line == " {"]
    assert str(err.value).startswith(f"{source}:{starts[1]}: field 'bob_reward'")


def test_cli_writes_rollouts_and_reports_bad_json(tmp_path):
    good = tmp_path / "tq.jsonl"
    good.write_text(json.dumps(twenty_questions_episode()) + "\n")
    out = tmp_path / "out" / "tq.jsonl"
    cli = [sys.executable, "-m", "stages.import_original", "--game", "twenty_questions"]
    done = subprocess.run([*cli, "--out", str(out), str(good)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported 1 episodes" in done.stdout and len(read_rollouts(out)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(twenty_questions_episode()) + "\n{oops\n")
    done = subprocess.run([*cli, "--out", str(out), str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0 and f"{bad}:2: not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr and len(read_rollouts(out)) == 1  # old file kept
