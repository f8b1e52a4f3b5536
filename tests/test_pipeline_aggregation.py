"""The cluster -> select-k -> label -> build stages under real DVC, in a throwaway repository.

The repository gets this project's code, params.yaml and these four per-seed stages from
dvc.yaml (one training seed, one two-player game: ``--game``), with synthetic rollouts added as
DVC-tracked data in place of the rollout stage's outputs.
"""
import json
import shutil

import pytest
import yaml

from tests.dvc_helpers import ROOT, dvc, ran, run
from tests.synthetic_rollouts import synthetic_rollouts, write_rollouts

pytestmark = pytest.mark.pipeline

GAMES = ["bargaining"]  # two roles, each with its own k; the other games run in test_clustering
SEED = 0  # one training seed: its folder s0 under each kind of artifact
STAGES = ["cluster", "select-k", "label", "build"]


def stage_names(*stages):
    return {f"{s}@{SEED}" for s in stages}


def set_param(repo, section, key, value):
    path = repo / "params.yaml"
    lines = path.read_text().splitlines(keepends=True)
    start = lines.index(f"{section}:\n")
    for i in range(start + 1, len(lines)):
        if lines[i].startswith(f"  {key}:"):
            comment = lines[i].split("#", 1)[1] if "#" in lines[i] else "\n"
            lines[i] = f"  {key}: {value}  #{comment}"
            break
    else:
        raise KeyError(f"{section}.{key}")
    path.write_text("".join(lines))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("aria-pipeline")
    for folder in ("src", "stages"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = {name: pipeline["stages"][name] for name in STAGES}
    for stage in stages.values():
        stage["foreach"] = [SEED]
        stage["do"]["cmd"] += "".join(f" --game {game}" for game in GAMES)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    set_param(repo, "select_k", "tau", 1)  # the synthetic games have only ~15 unique utterances
    for game in GAMES:
        write_rollouts(repo / f"data/rollouts/s{SEED}/{game}.jsonl", synthetic_rollouts(game, 60))
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "test@example.com")
    run(repo, "git", "config", "user.name", "test")
    dvc(repo, "init", "-q")
    dvc(repo, "add", f"data/rollouts/s{SEED}")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "code, params and rollouts")
    return repo


def chosen_k(repo, game="bargaining"):
    return json.loads((repo / f"metrics/select_k/s{SEED}/{game}.json").read_text())["k"]


def test_reruns_follow_params_and_experiments_compare(repo):
    assert ran(dvc(repo, "repro")) == stage_names(*STAGES)
    assert ran(dvc(repo, "repro")) == set()
    assert "up to date" in dvc(repo, "status")

    before = chosen_k(repo)
    set_param(repo, "select_k", "epsilon", 0.1)
    assert ran(dvc(repo, "repro")) == stage_names("select-k", "label", "build")
    assert chosen_k(repo) != before  # so the new labels really had to be rebuilt

    set_param(repo, "cluster", "linkage", "average")
    assert ran(dvc(repo, "repro")) == stage_names(*STAGES)

    set_param(repo, "cluster", "linkage", "ward")
    set_param(repo, "select_k", "epsilon", 0.01)
    dvc(repo, "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline results")

    for epsilon in ("0.1", "0.2"):
        out = dvc(repo, "exp", "run", "-n", f"eps-{epsilon}", "-S", f"select_k.epsilon={epsilon}")
        assert "cluster@" not in " ".join(ran(out))
    shown = json.loads(dvc(repo, "exp", "show", "--json"))
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                metrics = data["metrics"][f"metrics/select_k/s{SEED}/bargaining.json"]["data"]
                found[rev["name"]] = (metrics["epsilon"], metrics["k"]["alice"])
    assert found["eps-0.1"][0] == 0.1 and found["eps-0.2"][0] == 0.2
    assert found["eps-0.1"][1] != found["eps-0.2"][1]
    assert "select_k.epsilon" in dvc(repo, "params", "diff", "HEAD", "--all")
