"""Atomic writes and validated reading of rollout files."""
import json

import pytest

from src.io_utils import InputError, atomic_path, read_jsonl, write_jsonl
from src.rollout.format import read_rollouts


def good_episode():
    return {"episode_id": "e1", "game": "twenty_questions", "seed": 1, "setup": {},
            "outcome": {"solved": False}, "policy": {}, "rewards": {"agent": 0.0},
            "turns": [{"speaker": "agent", "text": "Is it alive?", "valid": True, "move": None,
                       "messages": [{"role": "user", "content": "Ask."}]},
                      {"speaker": "env", "text": "No.", "valid": True, "move": {"answer": "no"}}]}


def test_interrupted_write_leaves_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"a": 2')
            raise RuntimeError("killed")
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize("mutate, expected", [
    (lambda e: "not json", ":2: not valid JSON"),
    (lambda e: json.dumps({k: v for k, v in e.items() if k != "rewards"}), ":2: missing field 'rewards'"),
    (lambda e: json.dumps({**e, "turns": "x"}), ":2: field 'turns' should be list"),
    (lambda e: json.dumps({**e, "rewards": {"agent": 2}}), "rewards.agent"),
    (lambda e: json.dumps({**e, "turns": [{**e["turns"][0], "speaker": "carol"}]}), "turns[0]: field 'speaker'"),
    (lambda e: json.dumps({**e, "turns": [{k: v for k, v in e["turns"][0].items() if k != "messages"}]}),
     "turns[0]: missing field 'messages'"),
])
def test_bad_rollout_line_names_file_line_field(tmp_path, mutate, expected):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good_episode()) + "\n" + mutate(good_episode()) + "\n")
    with pytest.raises(InputError) as err:
        read_rollouts(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        read_rollouts(path)
