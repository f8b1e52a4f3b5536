"""Several processes (accelerate launch, 2 CPU processes over gloo) on the tiny profile.

One temporary repository for the module: `dvc repro` with `launch.processes: 2` runs every
kind of distributed stage under accelerate launch (rollout, train-offline, train-rm,
train-online, grad-variance, evaluate), for training seed 0, targeting only the stages the
checks read (TARGETS and what they depend on). Its outputs are then compared with the same
library calls in this one process: the sampled rollout and the evaluation metrics are equal,
the train-offline adapter equal within float round-off. A 2-process train-offline run is
killed after a checkpoint and resumes to the end, and two queued experiments run in parallel
(`dvc queue start -j 2`).

LoRA dropout is 0 here: dropout masks are drawn per process, so with dropout two processes
match one in distribution only, not weight for weight.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from src.rollout.format import read_rollouts
from tests.dvc_helpers import dvc, git_init, ran, run, tiny_project

pytestmark = pytest.mark.pipeline

GAMES = ["bargaining", "negotiation", "twenty_questions", "guess_my_city"]
SEED = 0  # the tiny profile's one training seed
EVALUATED = ["negotiation", "twenty_questions"]  # a two-player and a single-agent game, compared here
# what the checks read; their upstream brings every game's rollout and records and every variant
TARGETS = [f"evaluate@{SEED}", "grad-variance@bargaining", "train-online"]
WEIGHT_TOLERANCE = 1e-5  # max |difference| of adapter weights, 2 processes vs 1


def set_param(repo: Path, pattern: str, replacement: str) -> None:
    params = repo / "params.yaml"
    text, count = re.subn(pattern, replacement, params.read_text(), count=1, flags=re.M)
    assert count == 1, pattern
    params.write_text(text)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("aria-distributed"))
    set_param(repo, r"^(launch:.*\n  processes:) 1", r"\1 2")
    set_param(repo, r"^(train:.*(?:\n .*)*?\n    dropout:) 0.05", r"\1 0.0")
    git_init(repo, "tiny profile, 2 processes")
    began = time.perf_counter()
    repo_ran = ran(dvc(repo, "repro", *TARGETS))
    print(f"dvc repro, 2 processes, tiny DAG to {' '.join(TARGETS)}: "
          f"{time.perf_counter() - began:.0f} s")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "2-process run")
    return repo, repo_ran


@pytest.fixture()
def in_repo(repo, monkeypatch):
    monkeypatch.chdir(repo[0])
    return repo[0]


def test_dvc_repro_runs_every_distributed_stage_with_two_processes(repo):
    path, stages = repo
    assert {"prepare-model", "train-online", "train-rm", "grad-variance@bargaining"} <= stages
    assert {f"rollout@{SEED}", f"evaluate@{SEED}"} <= stages
    assert {f"train-offline@{v}-{SEED}" for v in ("aria", "raw", "bc", "true_intention")} <= stages
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    launched = [name for name, body in lock.items() if "src.launch" in body["cmd"]]
    assert launched and all("python -m src.launch --processes 2" in lock[name]["cmd"]
                            for name in launched)
    assert {"train-online", "train-rm", f"evaluate@{SEED}", f"rollout@{SEED}"} <= set(launched)
    for game in GAMES:
        metrics = json.loads((path / f"metrics/rollout/s{SEED}/{game}.json").read_text())
        assert metrics["processes"] == 2
        assert len(read_rollouts(path / f"data/rollouts/s{SEED}/{game}.jsonl")) == 4
    assert ran(dvc(path, "repro", *TARGETS)) == set()


def test_two_process_sampled_rollout_equals_one_process(in_repo):
    from src.config import load_section
    from src.games import GamesConfig
    from src.policy.policy import Policy
    from src.rollout.play import RolloutConfig, seeded_rollout, self_play

    cfg = seeded_rollout(load_section("rollout", RolloutConfig), SEED)
    assert cfg.sampling.temperature > 0
    policy = Policy.load("models/base", device="cpu", name="base")
    for game in GAMES:
        one, _ = self_play(game, load_section("games", GamesConfig), policy, cfg)
        two = read_rollouts(in_repo / f"data/rollouts/s{SEED}/{game}.jsonl")
        assert json.loads(json.dumps(one)) == two, game  # byte-identical episodes, in order


def test_two_process_evaluation_equals_one_process(in_repo):
    from src.config import load_section
    from src.evaluation.evaluate import EvaluateConfig, evaluate_game
    from src.engines import Generation
    from src.games import GamesConfig
    from src.rollout.play import RolloutConfig

    generation = Generation(load_section("rollout", RolloutConfig).engine, "models/base", device="cpu")
    for game in EVALUATED:
        records, metrics = evaluate_game(game, load_section("games", GamesConfig),
                                         load_section("evaluate", EvaluateConfig), generation,
                                         train_seed=SEED)
        two = json.loads((in_repo / f"metrics/eval/s{SEED}/{game}.json").read_text())
        assert json.loads(json.dumps(metrics["policies"])) == two["policies"], game
        with open(in_repo / f"data/eval/s{SEED}/{game}.jsonl") as fh:
            assert [json.loads(line)["turns"] for line in fh] == [r["turns"] for r in records]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, as a node failure would. torch's launcher
    starts each worker in a session of its own, so killing the launcher's process group
    alone would leave the workers training on, racing the resumed run for its checkpoints."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def one_process_adapter(repo: Path, variant: str, out: Path) -> dict:
    from src.config import load_section
    from src.games import GamesConfig
    from src.paths import RunPaths
    from src.training.offline import TrainConfig, train_offline
    from src.training.records import read_records

    cfg = load_section("train", TrainConfig)
    paths = RunPaths(output=out / "policy", checkpoints=out / "ckpt", live=out / "live",
                     curves=out / "curves")
    records = {g: read_records(g, repo / "data" / "records" / f"s{SEED}") for g in cfg.games}
    train_offline(records, variant, cfg, paths=paths, games_cfg=load_section("games", GamesConfig),
                  seed=SEED)
    return load_file(paths.output / "adapter_model.safetensors")


def assert_close(a: dict, b: dict, start: dict | None = None) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= WEIGHT_TOLERANCE, worst
    if start is not None:
        assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained


def test_two_process_train_offline_equals_one_process(in_repo, tmp_path):
    two = load_file(in_repo / f"models/policies/s{SEED}/aria/adapter_model.safetensors")
    one = one_process_adapter(in_repo, "aria", tmp_path)
    step_count = json.loads((in_repo / f"metrics/train_offline/s{SEED}/aria.json").read_text())["steps"]
    assert step_count >= 3
    from src.config import load_section
    from src.training.offline import TrainConfig
    from src.training.reinforce import build_trainable_model

    cfg = load_section("train", TrainConfig)
    model, _ = build_trainable_model("models/base", "float32", cfg.lora, SEED)
    start = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert_close(two, one, {k: start[k] for k in two})


def test_killed_two_process_training_resumes(in_repo, tmp_path):
    """A longer raw-variant run (epochs 12) under 2 processes, killed once a checkpoint
    exists, resumes from it and ends equal to an uninterrupted 1-process run."""
    set_param(in_repo, r"^(train:.*(?:\n .*)*?\n  epochs:) \d+", r"\1 12")
    try:
        ckpt = in_repo / f"checkpoints/train_offline/s{SEED}/raw"
        launch = [sys.executable, "-m", "src.launch", "--processes", "2", "--",
                  "stages.train_offline", "--variant", "raw", "--seed", str(SEED)]
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.Popen(launch, cwd=in_repo, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while not list(ckpt.glob("step-*")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        kill_tree(proc.pid)
        proc.wait()
        assert list(ckpt.glob("step-*")), "no checkpoint before the kill"
        assert proc.returncode == -signal.SIGKILL  # killed, not finished
        run(in_repo, *launch)
        metrics = json.loads((in_repo / f"metrics/train_offline/s{SEED}/raw.json").read_text())
        assert metrics["completed"] and metrics["resumed_from_step"] >= 1
        assert metrics["steps"] == 12 * 4 and not ckpt.exists()
        two = load_file(in_repo / f"models/policies/s{SEED}/raw/adapter_model.safetensors")
        one = one_process_adapter(in_repo, "raw", tmp_path)
        assert_close(two, one)
    finally:
        run(in_repo, "git", "checkout", "--", ".")
        dvc(in_repo, "checkout", "-f", f"train-offline@raw-{SEED}")  # the outputs it rewrote


def test_queued_experiments_run_in_parallel(repo):
    """Two experiments on a stage whose inputs the repository holds (select-k on the
    committed clustering), so each runs one stage."""
    path, _ = repo
    target = f"select-k@{SEED}"
    dvc(path, "exp", "run", "--queue", "-S", "select_k.epsilon=0.05,0.1", target)
    dvc(path, "queue", "start", "-j", "2")
    deadline = time.time() + 400
    while time.time() < deadline:
        status = dvc(path, "queue", "status")
        if not re.search(r"Queued|Running", status):
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = json.loads(dvc(path, "exp", "show", "--json"))
    epsilons = set()
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                params = rev["data"]["params"]["params.yaml"]["data"]
                metrics = rev["data"]["metrics"][f"metrics/select_k/s{SEED}/bargaining.json"]["data"]
                assert metrics["epsilon"] == params["select_k"]["epsilon"]
                epsilons.add(params["select_k"]["epsilon"])
    assert {0.05, 0.1} <= epsilons
