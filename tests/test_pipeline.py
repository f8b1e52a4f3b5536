"""The whole DAG under real `dvc repro`, on the tiny profile, in a copy of this repository.

prepare-model builds the tiny random Llama, rollout plays every game for every training seed,
and every stage down to the report runs. Checks: each declared output exists, rollouts validate
and carry true intentions, a second repro runs nothing, and adding a training seed leaves only
that seed's stages (and the report) to run: `dvc status` names them, and running the new seed's
data chain leaves the other seed's outputs as they were. (The whole DAG runs for one seed: a
second seed's stages would double the test's time and show nothing the added seed does not.)
"""
import json
import re

import pytest

from src.rollout.format import read_rollouts
from tests.dvc_helpers import dvc, git_init, ran, tiny_project

pytestmark = pytest.mark.pipeline

GAMES = ["bargaining", "negotiation", "twenty_questions", "guess_my_city"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("aria-dag"))
    git_init(repo, "tiny profile")
    return repo


def seeds_in(params: str) -> list[int]:
    return json.loads(re.search(r"\n  seeds: (\[[^\]]*\])", params).group(1))


def test_whole_dag_runs_and_one_seed_reruns_alone(repo):
    seeds = seeds_in((repo / "params.yaml").read_text())
    assert seeds == [0]
    first = ran(dvc(repo, "repro"))
    assert {"corpus", "prepare-model", "report", "train-online"} | {
        f"rollout@{s}" for s in seeds} <= first
    for game in GAMES:
        for seed in seeds:
            episodes = read_rollouts(repo / f"data/rollouts/s{seed}/{game}.jsonl")
            assert len(episodes) == 4
            assert all("intention" in t for e in episodes for t in e["turns"] if t["speaker"] != "env")
            assert (repo / f"data/records/s{seed}/{game}.jsonl").stat().st_size > 0
            assert "policies" in json.loads((repo / f"metrics/eval/s{seed}/{game}.json").read_text())
    assert "| aria |" in (repo / "reports/results.md").read_text()
    assert ran(dvc(repo, "repro")) == set()

    kept = seeds[0]
    before = (repo / f"data/records/s{kept}/bargaining.jsonl").read_bytes()
    new = max(seeds) + 1
    params = (repo / "params.yaml").read_text()
    changed = seeds + [new]
    (repo / "params.yaml").write_text(params.replace(f"\n  seeds: {json.dumps(seeds)}".replace('"', ""),
                                                     f"\n  seeds: {json.dumps(changed)}"))
    assert seeds_in((repo / "params.yaml").read_text()) == changed
    # dvc status names the stages to run: the new seed's, and the report that reads every seed
    status = json.loads(dvc(repo, "status", "--json"))
    of_new_seed = {name for name in status if name.endswith((f"@{new}", f"-{new}"))}
    assert of_new_seed and set(status) - {"report", "check-params"} == of_new_seed, status
    assert {f"{stage}@{new}" for stage in ("rollout", "build", "evaluate")} | {
        f"train-offline@{v}-{new}" for v in ("aria", "raw", "bc", "true_intention")} <= set(status)
    # the new seed's data chain (training and evaluation would double the test's time)
    rerun = ran(dvc(repo, "repro", f"build@{new}"))
    assert rerun == {f"{stage}@{new}" for stage in ("rollout", "cluster", "select-k", "label", "build")}
    assert (repo / f"data/records/s{kept}/bargaining.jsonl").read_bytes() == before
    assert len(read_rollouts(repo / f"data/rollouts/s{new}/twenty_questions.jsonl")) == 4
    assert (repo / f"data/records/s{new}/twenty_questions.jsonl").stat().st_size > 0
