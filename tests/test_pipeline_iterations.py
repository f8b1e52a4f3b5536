"""ARIA iteration 2 under real `dvc repro`, on the tiny profile (two iterations), in a copy of
this repository: one training seed, the aria variant only, and only the stages that iteration
2's evaluation needs. Checks: `dvc dag` chains iteration 1's aria policy through iteration 2's
stages; the iteration plays its own game seeds and is evaluated on iteration 1's episodes;
changing iteration 2's params leaves every stage of iteration 1 clean in `dvc status` while
iteration 2's go stale and rerun alone (docs/method.md §14).
"""
import json
import re
import time

import pytest

from src.config import read_params
from src.rollout.format import read_rollouts
from tests.dvc_helpers import dvc, git_init, ran, tiny_project

pytestmark = pytest.mark.pipeline

GAMES = ["bargaining", "negotiation", "twenty_questions", "guess_my_city"]
TARGET = "iterate-evaluate@it0-0"  # the first entry of iterate.iterations (iteration 2), seed 0
ITERATION_2 = {f"iterate-{stage}@it0-0" for stage in
               ("rollout", "cluster", "select-k", "label", "build", "train", "evaluate")}
ITERATION_1 = {f"{stage}@0" for stage in ("rollout", "cluster", "select-k", "label", "build",
                                          "evaluate", "iterate-start")} | {
    "corpus", "prepare-model", "validate-base", "train-offline@aria-0",
    "train-dpo@step-0", "train-dpo@trajectory-0"}  # evaluate@0 plays the DPO baselines too


def edit_params(repo, change) -> None:
    """``change(params)`` on the repository's params.yaml, comments and layout kept."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True  # "no" stays a string
    path = repo / "params.yaml"
    data = yaml.load(path)
    change(data)
    with open(path, "w") as fh:
        yaml.dump(data, fh)


def aria_only(params) -> None:
    assert list(params["train"]["seeds"]) == [0]  # the tiny profile: one training seed
    params["train"]["variants"] = ["aria"]
    params["evaluate"]["policies"] = {"base": "models/base", "aria": "models/policies/s{seed}/aria"}
    params["evaluate"]["comparisons"] = [["aria", "base"]]
    params["train"]["validation"]["episodes"] = 0  # no learning curves: the test's time


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("aria-iterations"))
    edit_params(repo, aria_only)
    git_init(repo, "tiny profile, aria only")
    return repo


def edges(repo, target: str) -> set[tuple[str, str]]:
    dot = dvc(repo, "dag", "--dot", target)
    return set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))


def test_iteration_two_runs_on_its_own_and_reruns_alone(repo):
    graph = edges(repo, TARGET)
    chain = ["train-offline@aria-0", "iterate-start@0", "iterate-rollout@it0-0",
             "iterate-cluster@it0-0", "iterate-select-k@it0-0", "iterate-label@it0-0",
             "iterate-build@it0-0", "iterate-train@it0-0", TARGET]
    assert {(a, b) for a, b in zip(chain, chain[1:])} <= graph, graph
    assert ("evaluate@0", TARGET) in graph  # paired with iteration 1's evaluation episodes

    first = ran(dvc(repo, "repro", TARGET))
    assert ITERATION_2 | ITERATION_1 == first, first
    for game in GAMES:
        episodes = read_rollouts(repo / f"data/rollouts/i2/s0/{game}.jsonl")
        assert len(episodes) == 4 and min(e["seed"] for e in episodes) >= 4_000_000
        assert (repo / f"data/records/i2/s0/{game}.jsonl").stat().st_size > 0
        m = json.loads((repo / f"metrics/eval/i2/s0/{game}.json").read_text())
        assert m["policy_order"] == ["aria"] and m["iteration"] == 2
        (c,) = m["comparisons"]
        assert (c["a"], c["b"]) == ("aria@2", "aria@1") and c["pairs"] == 2  # evaluate.episodes
    trained = json.loads((repo / "metrics/train_offline/i2/s0/aria.json").read_text())
    assert trained["completed"]
    assert (repo / "models/policies/i2/s0/aria/adapter_config.json").is_file()
    assert ran(dvc(repo, "repro", TARGET)) == set()

    stale_before = set(json.loads(dvc(repo, "status", "--json")))  # stages never run here
    assert [e["iteration"] for e in read_params(repo / "params.yaml")["iterate"]["iterations"]] == [2]
    edit_params(repo, lambda p: p["iterate"].__setitem__("episodes", 6))  # iteration 2's own param
    stale = set(json.loads(dvc(repo, "status", "--json"))) - stale_before
    assert stale == {"iterate-rollout@it0-0"}, stale  # the one stage that declares iterate.*
    assert not stale & ITERATION_1
    data_chain = {f"iterate-{stage}@it0-0" for stage in
                  ("rollout", "cluster", "select-k", "label", "build")}
    began = time.perf_counter()
    assert ran(dvc(repo, "repro", "iterate-build@it0-0")) == data_chain  # iteration 1 as it was
    seconds = time.perf_counter() - began
    assert len(read_rollouts(repo / "data/rollouts/i2/s0/bargaining.jsonl")) == 6
    stale = set(json.loads(dvc(repo, "status", "--json"))) - stale_before
    assert stale == {"iterate-train@it0-0"}, stale  # new records: iteration 2's training is next
    print(f"iteration 2's rollout to build, one seed, tiny profile: {seconds:.0f} s")
