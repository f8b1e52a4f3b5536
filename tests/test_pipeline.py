"""The whole DAG under real `dvc repro`, on the tiny profile, in a copy of this repository.

prepare-model builds the tiny random Llama, rollout plays every game, and every stage down to
the report runs. Checks: each declared output exists, rollouts validate, a second repro runs
nothing, and a changed rollout param reruns rollout and what follows but not prepare-model.
"""
import json

import pytest

from src.rollout.format import read_rollouts
from tests.dvc_helpers import dvc, git_init, ran, run, tiny_project

pytestmark = pytest.mark.pipeline

GAMES = ["bargaining", "negotiation", "twenty_questions", "guess_my_city"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("aria-dag"))
    git_init(repo, "tiny profile")
    return repo


def test_whole_dag_runs_and_reruns_only_what_changed(repo):
    first = ran(dvc(repo, "repro"))
    assert {"prepare-model", "report", "train-online"} | {f"rollout@{g}" for g in GAMES} <= first
    for game in GAMES:
        episodes = read_rollouts(repo / f"data/rollouts/{game}.jsonl")
        assert len(episodes) == 4
        assert json.loads((repo / f"metrics/rollout/{game}.json").read_text())["episodes"] == 4
        assert (repo / f"data/records/{game}.jsonl").stat().st_size > 0
        assert "policies" in json.loads((repo / f"metrics/eval/{game}.json").read_text())
    assert "| aria-offline |" in (repo / "reports/results.md").read_text()
    assert ran(dvc(repo, "repro")) == set()

    run(repo, "python", "-c", "import re,pathlib; p=pathlib.Path('params.yaml'); "
        "p.write_text(re.sub(r'(rollout:\\n  episodes:) 4', r'\\1 6', p.read_text()))")
    # a dry run lists the stages whose own deps or params changed: every rollout, nothing else
    assert ran(dvc(repo, "repro", "--dry")) == {f"rollout@{g}" for g in GAMES}
    assert ran(dvc(repo, "repro", "rollout@twenty_questions")) == {"rollout@twenty_questions"}
    assert len(read_rollouts(repo / "data/rollouts/twenty_questions.jsonl")) == 6
