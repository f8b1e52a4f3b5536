"""Faults and bad input across the pipeline: nothing lost, nothing silently wrong.

One test (or more) per case of the fault list in docs/faults.md. The DVC cases
share one throwaway copy of this project on the tiny profile, where prepare-model and
rollout@0 are reproduced and committed (as a clone of the real project would find
them); everything else runs in process on the tiny random Llama or on no model at all.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from src.config import ConfigError, SECTIONS, defaults, load_section
from src.rollout.importer import import_original
from src.io_utils import InputError, atomic_dir, read_json
from src.limits import Limits
from src.policy.models import ModelConfig, prepare_model
from src.evaluation.report import ReportConfig
from src.rollout.format import read_rollouts
from src.training.checkpoint import latest_checkpoint
from src.paths import RunPaths
from src.training.offline import train_offline
from src.training.records import read_records
from src.training.reinforce import LoraSettings
from synthetic_records import make_record, online_settings, records_by_game, train_config
from synthetic_rollouts import synthetic_rollouts, write_rollouts
from tests.dvc_helpers import ROOT, dvc, git_init, ran, run, run_stage, tiny_project

STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__")
TINY_TRAIN = train_config(games=["twenty_questions"], max_records_per_game=4, epochs=1,
                          batch_size=2, checkpoint_every=1,
                          lora=defaults(LoraSettings, "train.lora", dropout=0.0))


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with this project's params.yaml (default profile), as the current directory."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def add_params(workdir: Path, text: str) -> None:
    with open(workdir / "params.yaml", "a", encoding="utf-8") as fh:
        fh.write(text)


def set_params(workdir: Path, **values) -> None:
    """Set params by dotted key (``set_params(w, **{"select_k.tau": 1})``); comments go."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def bargaining_original(i: int, **changes) -> dict:
    """One episode in the original release's two-player format."""
    row = {"player_1_system_prompt": "You are Alice. Split $100 with Bob.",
           "player_2_system_prompt": "You are Bob. Split $100 with Alice.",
           "alice_actions": [f"Alice gets {50 + i}, Bob gets {50 - i}.", "Final offer, take it."],
           "bob_actions": ["I reject." if i % 2 else "Maybe later.", "I accept."],
           "alice_reward": 1.0 if i % 3 else 0.0, "bob_reward": 0.0 if i % 3 else 1.0}
    row.update(changes)
    return row


def write_original(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# -- the shared tiny-profile DVC repository --------------------------------------------------
@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("aria-faults"))
    git_init(repo, "tiny profile")
    assert ran(dvc(repo, "repro", "rollout@0")) == {"corpus", "prepare-model", "rollout@0"}
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "prepare-model and rollout@0")
    return repo


def cache_object(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


# 1 -----------------------------------------------------------------------------------------
def test_hand_edit_of_an_output_leaves_the_cache_intact(dag):
    out = dag / "data/rollouts/s0/bargaining.jsonl"
    lock = yaml.safe_load((dag / "dvc.lock").read_text())
    listing = next(o["md5"] for o in lock["stages"]["rollout@0"]["outs"]
                   if o["path"] == "data/rollouts/s0")  # the folder's listing: file -> md5
    md5 = next(entry["md5"] for entry in json.loads(cache_object(dag, listing).read_text())
               if entry["relpath"] == "bargaining.jsonl")
    cached = cache_object(dag, md5)
    assert cached.is_file() and not os.path.samefile(out, cached)  # a copy, not a link
    edited = dag.parent / "my.jsonl"
    edited.write_text(out.read_text().replace('"bargaining-000000"', '"bargaining-999999"'))
    shutil.copyfile(edited, out)  # what `cp my.jsonl data/rollouts/s0/bargaining.jsonl` does
    status = dvc(dag, "status", "rollout@0")
    assert "modified:" in status and "data/rollouts/s0" in status
    assert hashlib.md5(cached.read_bytes()).hexdigest() == md5
    dvc(dag, "checkout", "--force", "rollout@0")
    assert hashlib.md5(out.read_bytes()).hexdigest() == md5


# 12, 13 ------------------------------------------------------------------------------------
def readme_import_recipe() -> list[str]:
    """The commands of the README's import recipe, exactly as documented."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bringing data from the original ARIA release")[1].split("\n## ")[0]
    recipe = re.search(r"From a fresh clone:\n\n```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in recipe.splitlines() if line.strip()]


def test_readme_import_recipe_works_on_a_fresh_clone(dag, tmp_path):
    commands = readme_import_recipe()
    assert any(c.startswith("python -m stages.build --seed 0 --game bargaining") for c in commands)
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(dag), str(clone))
    assert not (clone / "models").exists() and not (clone / ".dvc" / "cache").exists()
    write_original(clone / "original" / "bargaining.jsonl", [bargaining_original(i) for i in range(8)])
    for command in commands:
        run(clone, "bash", "-c", command)

    records = read_records("bargaining", clone / "data" / "records" / "s0")
    assert {r["episode_id"] for r in records} == {f"bargaining-orig-{i:06d}" for i in range(8)}
    metrics = json.loads((clone / "metrics/rollout/s0/bargaining.json").read_text())
    assert metrics["source"] == "import_original" and metrics["episodes"] == 8  # not self-play's 4
    assert metrics["episodes_left_out"] == {"utterance_chars": 0, "prompt_chars": 0}
    assert json.loads((clone / "metrics/build/s0/bargaining.json").read_text())["records"] == len(records)


# 2 -----------------------------------------------------------------------------------------
def offline_paths(tmp_path: Path, base: Path) -> RunPaths:
    return RunPaths(base=str(base), output=tmp_path / "policy", checkpoints=tmp_path / "ckpt",
                    live=tmp_path / "live", curves=tmp_path / "curves",
                    metrics=tmp_path / "metrics" / "aria.json")


def test_failed_final_metrics_write_keeps_the_run(tiny_model_dir, tmp_path):
    data = {"twenty_questions": records_by_game(4)["twenty_questions"]}
    paths = offline_paths(tmp_path, tiny_model_dir)
    (tmp_path / "metrics").write_text("a file where the metrics folder should be")
    with pytest.raises(OSError) as err:
        train_offline(data, "aria", TINY_TRAIN, paths=paths)
    assert str(paths.metrics) in str(err.value)
    assert latest_checkpoint(paths.checkpoints).name == "step-0000002"  # the last step, kept
    trained = (paths.output / "adapter_model.safetensors").read_bytes()

    (tmp_path / "metrics").unlink()
    metrics = train_offline(data, "aria", TINY_TRAIN, paths=paths)
    assert metrics["resumed_from_step"] == metrics["steps"] == 2  # no step trained again
    assert (paths.output / "adapter_model.safetensors").read_bytes() == trained
    assert read_json(paths.metrics) == metrics
    assert not paths.checkpoints.exists()


def test_failed_final_metrics_write_keeps_the_online_run(tmp_path, tiny_model_dir):
    from src.paths import OnlinePaths
    from src.training.online import OnlineConfig, train_online
    from src.training.reinforce import build_trainable_model
    from src.training.reward_model import MLPSettings, RMConfig, train_reward_model
    from src.games import GamesConfig, TwoPlayerConfig
    from src.policy.sampling import SamplingConfig

    lora = defaults(LoraSettings, "train.lora")
    model, tokenizer = build_trainable_model(str(tiny_model_dir), "float32", lora, 0)
    model.save_pretrained(tmp_path / "aria")
    tokenizer.save_pretrained(tmp_path / "aria")
    rm_cfg = defaults(RMConfig, "rm", mlp=defaults(MLPSettings, "rm.mlp", epochs=1))
    train_reward_model(records_by_game(2)["bargaining"], rm_cfg).save(tmp_path / "rm")
    sampling = defaults(SamplingConfig, "rollout.sampling", max_new_tokens=4, batch_size=4)
    cfg = defaults(OnlineConfig, "online", games=["bargaining"], iterations=1, episodes=1,
                   rm_retrain_every=0, sampling=sampling, max_actions=2, batch_size=2,
                   baseline="none")
    games = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=1))
    settings = online_settings(games=games, rm=rm_cfg)
    paths = OnlinePaths(start=tmp_path / "aria", rm=tmp_path / "rm", rollouts=tmp_path / "none",
                        chosen_k=tmp_path / "none", output=tmp_path / "online",
                        checkpoints=tmp_path / "ckpt", live=tmp_path / "live",
                        metrics=tmp_path / "metrics" / "train_online.json",
                        base=str(tiny_model_dir))
    (tmp_path / "metrics").write_text("not a folder")
    with pytest.raises(OSError):
        train_online(cfg, settings, paths)
    assert latest_checkpoint(paths.checkpoints).name == "step-0000001"
    (tmp_path / "metrics").unlink()
    metrics = train_online(cfg, settings, paths)
    assert metrics["resumed_from_iteration"] == 1 and read_json(paths.metrics) == metrics
    assert not paths.checkpoints.exists()


# 3 -----------------------------------------------------------------------------------------
HASHSEED_RUN = """
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from src.config import defaults
from src.paths import RunPaths
from src.training.offline import train_offline
from src.training.reinforce import LoraSettings
from synthetic_records import records_by_game, train_config
out = Path(sys.argv[1])
lora = defaults(LoraSettings, "train.lora", target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
cfg = train_config(games=["twenty_questions"], max_records_per_game=2, batch_size=2, lora=lora)
train_offline({{"twenty_questions": records_by_game(2)["twenty_questions"]}}, "aria", cfg,
              paths=RunPaths(base=sys.argv[2], output=out / "policy", checkpoints=out / "ckpt",
                             live=out / "live", curves=out / "curves"))
"""


def test_model_folder_bytes_do_not_depend_on_the_hash_seed(tiny_model_dir, tmp_path):
    script = HASHSEED_RUN.format(root=str(ROOT), tests=str(ROOT / "tests"))
    runs = {}
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, OMP_NUM_THREADS="1")  # two at once
        runs[seed] = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / seed),
                                       str(tiny_model_dir)], env=env, stderr=subprocess.PIPE,
                                      text=True)
    for proc in runs.values():
        assert proc.wait() == 0, proc.stderr.read()
    folders = [tmp_path / seed / "policy" for seed in runs]
    files = [{p.relative_to(f): p.read_bytes() for p in sorted(f.rglob("*")) if p.is_file()}
             for f in folders]
    assert files[0].keys() == files[1].keys() and "adapter_config.json" in {str(k) for k in files[0]}
    assert all(files[0][k] == files[1][k] for k in files[0])
    config = json.loads((folders[0] / "adapter_config.json").read_text())
    assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]


# 4, 6 --------------------------------------------------------------------------------------
def test_prepare_model_checks_the_source_before_replacing_models_base(tmp_path):
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # the previous, good folder
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    for source, expected in [(str(tmp_path / "nonexistent"), "no such folder"),
                             (str(not_a_model), "no config.json"),
                             ("packaged:gpt-17", "is not a packaged model"),
                             ("no-such-org/no-such-model", "cannot be loaded")]:
        with pytest.raises(ConfigError) as err:
            prepare_model(defaults(ModelConfig, "model", source=source), base)
        assert f"model.source '{source}'" in err.value.message and expected in err.value.message
        assert "accepted: miniature, packaged:SmolLM2-135M-Instruct" in err.value.message
        assert "\n" not in err.value.message
        assert sorted(os.listdir(base)) == ["config.json"] and not base.with_name("base.tmp").exists()


@pytest.mark.parametrize("key, value, accepted", [
    ("model.source", "/nonexistent", "no such folder; accepted: miniature, "
                                     "packaged:SmolLM2-135M-Instruct, packaged:tiny-random-llama, "
                                     "an HF model id (org/name) or a local model folder"),
    ("model.source", "packaged:llama-9000", "accepted: miniature, packaged:SmolLM2-135M-Instruct"),
    ("model.device", "gpu", "accepted: auto, cpu, cuda, cuda:N"),
    ("model.device", "cuda", "CUDA is not available on this machine; accepted here: auto, cpu"),
])
def test_bad_model_source_or_device_is_one_line(workdir, monkeypatch, capsys, key, value, accepted):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    set_params(workdir, **{key: value})
    for name in ("prepare_model", "rollout"):
        code, err = run_stage(name, ["--game", "bargaining", "--seed", "0"], monkeypatch, capsys)
        message = one_line_error(err)
        assert code == 2 and f"params.yaml: {key} '{value}'" in message and accepted in message


# 5 -----------------------------------------------------------------------------------------
def test_next_run_removes_leftovers_of_interrupted_writes(workdir, monkeypatch, capsys):
    out = workdir / "data" / "rollouts" / "s0"  # the import is training seed 0's rollouts
    out.mkdir(parents=True)
    (out / ".bargaining.jsonl.k3j_x9q2.tmp").write_text('{"half": ')  # killed mid-write
    (out / ".negotiation.jsonl.k3j_x9q2.tmp").write_text("another output's: not ours")
    (out / "notes.tmp").write_text("not a leftover")
    source = write_original(workdir / "orig.jsonl", [bargaining_original(i) for i in range(2)])
    code, err = run_stage("import_original", ["--game", "bargaining", str(source)], monkeypatch, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        ".negotiation.jsonl.k3j_x9q2.tmp", "bargaining.jsonl", "notes.tmp"]
    policies = workdir / "models" / "policies" / "s0"
    (policies / ".aria.ab12cd34.tmp").mkdir(parents=True)  # an interrupted folder output
    (policies / ".aria.ab12cd34.tmp" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    with atomic_dir(policies / "aria") as tmp:
        (tmp / "adapter_config.json").write_text("{}")
    assert sorted(p.name for p in policies.iterdir()) == ["aria"]


# 7, 14 -------------------------------------------------------------------------------------
def test_non_utf8_bytes_name_file_and_line(tmp_path):
    good = json.dumps(synthetic_rollouts("twenty_questions", 1)[0])
    rollouts = tmp_path / "rollouts.jsonl"
    rollouts.write_bytes(good.encode() + b"\n" + good.encode().replace(b"Guess", b"Gu\xe9ss") + b"\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(rollouts))}:2: not valid UTF-8 \(byte 0xe9"):
        read_rollouts(rollouts)

    records = tmp_path / "records" / "twenty_questions.jsonl"
    records.parent.mkdir()
    records.write_bytes(b"\n".join(json.dumps(make_record(episode=i)).encode() for i in range(3))
                        .replace(b"Ask your", b"Ask \xff\xfeyour") + b"\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(records))}:1: not valid UTF-8"):
        read_records("twenty_questions", records.parent)

    original = tmp_path / "original.json"
    text = json.dumps([bargaining_original(0), bargaining_original(1)], indent=1)
    line = text[:text.index("Alice gets 51")].count("\n") + 1
    original.write_bytes(text.replace("Alice gets 51", "Alice g\x00ets 51").encode()
                         .replace(b"g\x00ets", b"g\xc3ets"))
    with pytest.raises(InputError, match=rf"^{re.escape(str(original))}:{line}: not valid UTF-8"):
        list(import_original("bargaining", [original]))

    metrics = tmp_path / "k.json"
    metrics.write_bytes(b'{\n  "k": {"agent": 3},\n  "note": "\x80"\n}\n')
    with pytest.raises(InputError, match=rf"^{re.escape(str(metrics))}:3: not valid UTF-8"):
        read_json(metrics)


def test_json_list_cut_short_is_reported_where_it_ends(tmp_path):
    original = tmp_path / "original.json"
    text = json.dumps([bargaining_original(i) for i in range(3)], indent=1)
    cut = text[:text.index('"bob_reward"', text.index("Alice gets 52"))]
    original.write_text(cut)
    with pytest.raises(InputError) as err:
        list(import_original("bargaining", [original]))
    assert str(err.value).startswith(f"{original}:{cut.count(chr(10)) + 1}: not valid JSON")
    assert "cut short" in str(err.value)


# 8 -----------------------------------------------------------------------------------------
def test_unwritable_output_folder_is_one_line_naming_the_path(workdir, monkeypatch, capsys):
    source = write_original(workdir / "orig.jsonl", [bargaining_original(0)])
    (workdir / "data").write_text("a file, so data/rollouts cannot be made")
    code, err = run_stage("import_original", ["--game", "bargaining", str(source)], monkeypatch, capsys)
    assert code == 4
    assert one_line_error(err) == ("error: data/rollouts/s0/bargaining.jsonl: cannot write "
                                   "(Not a directory)")


def test_full_disk_is_one_line_naming_the_path(workdir, monkeypatch, capsys):
    source = write_original(workdir / "orig.jsonl", [bargaining_original(0)])

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("src.io_utils.os.replace", disk_full)
    code, err = run_stage("import_original", ["--game", "bargaining", str(source)], monkeypatch, capsys)
    assert code == 4
    assert one_line_error(err) == ("error: data/rollouts/s0/bargaining.jsonl: cannot write "
                                   "(No space left on device)")
    assert [p.name for p in (workdir / "data/rollouts/s0").iterdir()] == []  # no temporary left


# 9 -----------------------------------------------------------------------------------------
def test_every_stage_rejects_an_unknown_section(workdir, monkeypatch, capsys):
    add_params(workdir, "\nselect-k:\n  epsilon: 0.1\n")
    for name in STAGES:
        assert "run_main(main)" in (ROOT / "stages" / f"{name}.py").read_text()
        code, err = run_stage(name, ["--game", "bargaining", "--variant", "aria"], monkeypatch, capsys)
        assert code == 2, name
        assert one_line_error(err) == (
            "error: params.yaml: unknown section 'select-k' (did you mean 'select_k'?); "
            f"sections: {', '.join(SECTIONS)}"), name


def test_sections_match_params_and_dvc_yaml():
    """A section added to params.yaml must be registered in src.config.SECTIONS (and so be
    read by some stage), or every stage would reject the file."""
    assert set(yaml.safe_load((ROOT / "params.yaml").read_text())) == set(SECTIONS)
    dvc_yaml = (ROOT / "dvc.yaml").read_text()
    used = {entry.split(".")[0] for stage_def in yaml.safe_load(dvc_yaml)["stages"].values()
            for entry in (stage_def.get("do", stage_def).get("params") or [])}
    used |= {m.split(".")[0] for m in re.findall(r"\$\{(\w+)[.}]", dvc_yaml)} - {"item"}
    assert used == set(SECTIONS)


@pytest.mark.parametrize("key, value, stage_name", [
    ("select_k.epsilon", float("nan"), "select_k"),
    ("train.lr", float("inf"), "train_offline"),
    ("rollout.sampling.temperature", float("-inf"), "rollout"),
])
def test_nan_and_infinity_are_rejected_at_load(workdir, monkeypatch, capsys, key, value,
                                               stage_name):
    set_params(workdir, **{key: value})
    assert ".nan" in (workdir / "params.yaml").read_text() or ".inf" in (workdir / "params.yaml").read_text()
    code, err = run_stage(stage_name, ["--game", "bargaining", "--variant", "aria"], monkeypatch, capsys)
    assert code == 2
    assert one_line_error(err) == f"error: params.yaml: {key}: {value} is not a finite number"


# 10 ----------------------------------------------------------------------------------------
def test_unknown_report_game_is_named(workdir, monkeypatch, capsys):
    set_params(workdir, **{"report.games": ["bargaining", "chess"]})
    with pytest.raises(ConfigError, match="report.games: unknown game 'chess'; known games: "
                                          "bargaining, negotiation"):
        load_section("report", ReportConfig)
    code, err = run_stage("report", [], monkeypatch, capsys)
    assert code == 2 and "evaluate@chess" not in err and "unknown game 'chess'" in one_line_error(err)


# 11 ----------------------------------------------------------------------------------------
HUGE = "a " * 50_000  # a 100k-character utterance


def test_huge_utterance_is_left_out_of_an_import(workdir, monkeypatch, capsys):
    rows = [bargaining_original(i) for i in range(4)]
    rows[1]["bob_actions"][0] = HUGE
    source = write_original(workdir / "orig.jsonl", rows)
    code, err = run_stage("import_original", ["--game", "bargaining", str(source)], monkeypatch, capsys)
    assert code == 0, err
    episodes = read_rollouts(workdir / "data/rollouts/s0/bargaining.jsonl")
    assert [e["episode_id"] for e in episodes] == [f"bargaining-orig-{i:06d}" for i in (0, 2, 3)]
    metrics = read_json(workdir / "metrics/rollout/s0/bargaining.json")
    assert metrics["episodes"] == 3
    assert metrics["episodes_left_out"] == {"utterance_chars": 1, "prompt_chars": 0}


def test_huge_utterance_passes_aggregation_and_is_left_out_of_records(workdir, monkeypatch, capsys):
    episodes = synthetic_rollouts("bargaining", 30)
    turns = episodes[3]["turns"]
    said, turns[0]["text"] = turns[0]["text"], HUGE  # Alice's first utterance ...
    for turn in turns[1:]:  # ... is in every later prompt
        turn["messages"][-1]["content"] = turn["messages"][-1]["content"].replace(said, HUGE)
    write_rollouts(workdir / "data/rollouts/s0/bargaining.jsonl", episodes)
    set_params(workdir, **{"select_k.tau": 1})  # the synthetic game has few unique utterances
    for name in ("cluster", "select_k", "label", "build"):
        code, err = run_stage(name, ["--game", "bargaining", "--seed", "0"], monkeypatch, capsys)
        assert code == 0, f"{name}: {err}"
    records = read_records("bargaining", workdir / "data/records/s0")
    assert all(r["episode_id"] != episodes[3]["episode_id"] for r in records)
    players = read_json(workdir / "metrics/build/s0/bargaining.json")["players"]
    assert players["alice"]["records_left_out"]["utterance_chars"] == 1
    later = len(episodes[3]["turns"]) - 1  # every later turn saw it in its prompt
    assert sum(p["records_left_out"]["prompt_chars"] for p in players.values()) == later


def test_huge_utterance_is_left_out_of_training(tiny_model_dir, tmp_path):
    records = records_by_game(4)["twenty_questions"]
    records.append(make_record(episode=9, action=HUGE, reward=1.0))
    records.append(make_record(episode=10, context="Think about it. " * 400, reward=1.0))
    paths = offline_paths(tmp_path, tiny_model_dir)
    cfg = train_config(games=["twenty_questions"], max_records_per_game=None, batch_size=8,
                       lora=defaults(LoraSettings, "train.lora", dropout=0.0))
    metrics = train_offline({"twenty_questions": records}, "aria", cfg, paths=paths,
                            limits=defaults(Limits, "limits", max_prompt_tokens=1000))
    assert metrics["records"] == 4 and metrics["steps"] == cfg.epochs  # one 8-record step per epoch
    assert metrics["records_left_out"] == {"twenty_questions": {
        "utterance_chars": 1, "prompt_chars": 0, "action_tokens": 0, "prompt_tokens": 1}}
    assert read_json(paths.metrics)["records_left_out"] == metrics["records_left_out"]


def test_rollout_leaves_out_episodes_over_the_limits(tiny_policy):
    from src.games import GamesConfig, TwoPlayerConfig
    from src.policy.sampling import SamplingConfig
    from src.rollout.play import RolloutConfig, self_play

    sampling = defaults(SamplingConfig, "rollout.sampling", max_new_tokens=4, batch_size=4)
    cfg = defaults(RolloutConfig, "rollout", episodes=2, sampling=sampling)
    games = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=1))
    kept, metrics = self_play("bargaining", games, tiny_policy, cfg, defaults(Limits, "limits"))
    assert len(kept) == 2 and metrics["episodes_left_out"] == {"utterance_chars": 0, "prompt_chars": 0}
    kept, metrics = self_play("bargaining", games, tiny_policy, cfg,
                              defaults(Limits, "limits", max_prompt_chars=100))
    assert kept == [] and metrics["episodes"] == 2 and metrics["episodes_written"] == 0
    assert metrics["episodes_left_out"] == {"utterance_chars": 0, "prompt_chars": 2}


# Custom code in a model folder ---------------------------------------------------------------
def custom_code_folder(root: Path, marker: Path) -> Path:
    """A model folder whose config.json and tokenizer_config.json map the Auto classes to the
    folder's own modules, each of which writes ``marker`` when imported."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({
        "model_type": "custom_lm", "architectures": ["CustomForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModel": "modeling_custom.CustomModel",
                     "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}}))
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CustomTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}}))
    for module in ("configuration_custom", "modeling_custom", "tokenization_custom"):
        (root / f"{module}.py").write_text(
            f"import pathlib\npathlib.Path({str(marker)!r}).write_text({module!r})\n")
    return root


@pytest.fixture
def says_yes(monkeypatch):
    """A user who answers "y" to any prompt (``yes y | dvc repro``)."""
    monkeypatch.setattr("builtins.input", lambda *args: "y")


def assert_custom_code_refused(message: str, folder: Path, marker: Path) -> None:
    assert "\n" not in message and str(folder) in message and "own Python code" in message
    assert not marker.exists()


def test_custom_code_in_a_model_folder_is_refused_in_one_line(workdir, monkeypatch, capsys,
                                                               says_yes):
    from src.intention.embedder import load_embedder
    from src.policy.models import load_model, load_tokenizer

    marker = workdir / "custom-code-ran"
    folder = custom_code_folder(workdir / "custom", marker)
    set_params(workdir, **{"model.source": str(folder)})
    code, err = run_stage("prepare_model", [], monkeypatch, capsys)
    assert code == 2
    assert_custom_code_refused(one_line_error(err), folder, marker)
    assert not (workdir / "models" / "base").exists()
    for load in (load_model, load_tokenizer, load_embedder):
        with pytest.raises(ConfigError) as err:
            load(str(folder))
        assert_custom_code_refused(err.value.message, folder, marker)


def test_adapter_on_another_base_is_refused_in_one_line(tiny_model_dir, tmp_path, says_yes):
    from src.policy.models import load_model
    from src.training.online import load_trainable_adapter
    from src.training.reinforce import build_trainable_model

    marker = tmp_path / "custom-code-ran"
    folder = custom_code_folder(tmp_path / "custom", marker)
    model, tokenizer = build_trainable_model(str(tiny_model_dir), "float32",
                                             defaults(LoraSettings, "train.lora"), 0)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    config = adapter / "adapter_config.json"
    assert load_model(adapter, device="cpu", base=tiny_model_dir)  # on its own base: loads
    config.write_text(config.read_text().replace(str(tiny_model_dir), str(folder)))
    for load in (lambda: load_model(adapter, device="cpu", base=tiny_model_dir),
                 lambda: load_model(adapter, device="cpu"),  # the configured base: models/base
                 lambda: load_trainable_adapter(adapter, "float32", str(tiny_model_dir))):
        with pytest.raises(ConfigError) as err:
            load()
        message = err.value.message
        assert "\n" not in message and message.startswith(f"{config}: base_model_name_or_path")
        assert str(folder) in message and not marker.exists()


# A pickle that runs code ---------------------------------------------------------------------
class RunsCode:
    """Unpickled, it writes ``marker``: what a malicious .pt file does to a plain torch.load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_every_torch_load_says_weights_only():
    calls = [(f, line) for f in sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "stages").glob("*.py"))
             for line in f.read_text().splitlines() if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


def test_a_pickle_that_runs_code_is_refused_in_one_line(tmp_path):
    from dataclasses import asdict
    from types import SimpleNamespace

    import torch

    from src.training.checkpoint import TrainingError, load_checkpoint
    from src.training.reward_model import MLPSettings, RewardModel

    marker = tmp_path / "pickle-ran"
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "reward_model.json").write_text(json.dumps({
        "backbone": "embedder_mlp", "embedding_dim": 4,
        "settings": asdict(defaults(MLPSettings, "rm.mlp"))}))
    torch.save({"net.0.weight": RunsCode(marker)}, rm / "mlp.pt")
    with pytest.raises(InputError) as err:
        RewardModel.load(rm, device="cpu")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{rm / 'mlp.pt'}: refused by torch.load")
    assert not marker.exists()

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    step = tmp_path / "ckpt" / "step-0000001"
    step.mkdir(parents=True)
    (step / "state.json").write_text(json.dumps({"step": 1, "history": [], "fingerprint": "f"}))
    from safetensors.torch import save_file
    save_file({n: p.detach() for n, p in model.named_parameters()}, step / "trainable.safetensors")
    torch.save({"state": RunsCode(marker)}, step / "optimizer.pt")
    accelerator = SimpleNamespace(process_index=0, is_main_process=True, print=print,
                                  wait_for_everyone=lambda: None)
    with pytest.raises(TrainingError) as err:
        load_checkpoint(step.parent, "f", model, optimizer, accelerator)
    message = str(err.value)
    assert "\n" not in message and f"{step / 'optimizer.pt'}: refused by torch.load" in message
    assert not marker.exists() and step.is_dir()  # kept: the user decides


# Seeds, bad values, the whole params file ------------------------------------------------------
@pytest.mark.parametrize("key, value, expected", [
    ("evaluate.seed", 0, "error: params.yaml: seed ranges overlap: rollout.seed of training seed 0 "
                         "plays [0, 64) and evaluate.seed plays [0, 32); each stage needs its own "
                         "game seeds"),
    ("rollout.seed", -4, "error: params.yaml: rollout.seed: -4 is negative; seeds start at 0"),
    ("report.dpi", -5, "error: params.yaml: report.dpi must be a positive integer, got -5"),
])
def test_seeds_and_values_out_of_range_are_one_line(workdir, monkeypatch, capsys, key, value,
                                                     expected):
    set_params(workdir, **{key: value})
    stage = {"evaluate": "evaluate", "rollout": "rollout", "report": "report"}[key.split(".")[0]]
    for name in (stage, "check_params"):
        code, err = run_stage(name, ["--game", "bargaining"], monkeypatch, capsys)
        assert code == 2 and one_line_error(err) == expected, name


def test_check_params_stage_runs_on_every_repro_and_fails_on_a_typo(dag):
    """DVC never sees an undeclared key: the always-changed check-params stage does, first."""
    params = dag / "params.yaml"
    text = params.read_text()
    try:
        params.write_text(text.replace("\n  linkage: ward", "\n  linkge: average\n  linkage: ward", 1))
        env = dict(os.environ, DVC_NO_ANALYTICS="1",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=dag, env=env,
                              capture_output=True, text=True)
        assert done.returncode != 0
        assert ran(done.stdout, always=True) == {"check-params"}  # first, and nothing after it
        assert ("error: params.yaml: cluster.linkge: Key 'linkge' not in 'ClusterConfig'"
                in done.stderr.splitlines())
        params.write_text(text)
        for _ in range(2):
            assert ran(dvc(dag, "repro", "check-params"), always=True) == {"check-params"}
        assert read_json(dag / "metrics/params_check.json")["sections"] == list(SECTIONS)
        assert "changed" not in dvc(dag, "status", "rollout@0")
    finally:
        params.write_text(text)
        run(dag, "git", "checkout", "-q", "dvc.lock")
        (dag / "metrics/params_check.json").unlink(missing_ok=True)


# One run at a time on the same outputs; a run ends with its parent --------------------------
LOCK_HOLDER = """
import sys
sys.path.insert(0, {root!r})
from src.io_utils import run_lock
with run_lock(sys.argv[1], "another"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold_lock(lock: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER.format(root=str(ROOT)), str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.parametrize("stage, argv, lock, what", [
    ("train_offline", ["--variant", "bc", "--seed", "0"], "checkpoints/train_offline/s0/bc.lock",
     "train-offline --variant bc --seed 0"),
    ("train_online", ["--seed", "0"], "checkpoints/train_online.lock", "train-online"),
    ("train_rm", ["--seed", "0"], "checkpoints/train_rm.lock", "train-rm"),
])
def test_a_second_training_run_on_the_same_outputs_refuses(workdir, monkeypatch, capsys, stage,
                                                            argv, lock, what):
    from src.io_utils import run_lock

    holder = hold_lock(workdir / lock)
    try:
        code, err = run_stage(stage, argv, monkeypatch, capsys)
        assert code == 3
        assert one_line_error(err) == (f"error: {lock}: locked by process {holder.pid}, another "
                                       f"{what} run on the same outputs; wait for it to end or "
                                       "stop it")
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    with run_lock(workdir / lock, what):  # released: the next run takes it
        assert (workdir / lock).read_text() == f"{os.getpid()}\n"
    killed = hold_lock(workdir / lock)
    killed.kill()  # a killed run: the kernel drops its lock
    killed.wait(timeout=30)
    with run_lock(workdir / lock, what):
        pass


ORPHANED_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from src.io_utils import die_with_parent
die_with_parent()
Path(sys.argv[1]).write_text("ready")
time.sleep(120)
"""

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl PR_SET_PDEATHSIG")
def test_a_stage_process_dies_with_its_parent(tmp_path):
    import signal
    import time

    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", PARENT,
                               ORPHANED_CHILD.format(root=str(ROOT)), str(ready)],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists() and alive(child)
        parent.kill()  # as `kill -9 <dvc pid>` does
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_stage_run_as_a_program_asks_to_die_with_its_parent(workdir, monkeypatch):
    from src.config import run_main

    calls = []
    monkeypatch.setattr("src.io_utils.die_with_parent", lambda: calls.append(1))

    def as_program():
        pass

    run_main(as_program)  # imported (tests): the process is not a stage's own
    as_program.__module__ = "__main__"  # `python -m stages.<name>`
    run_main(as_program)
    assert calls == [1]


# Several processes on one machine listen on 127.0.0.1 only ----------------------------------------
def test_single_node_launch_keeps_its_stores_on_loopback(monkeypatch):
    from src.launch import OPTIONS, ON_LOOPBACK, command

    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    cmd, env = command({**OPTIONS, "processes": "2"}, ["stages.rollout", "--game", "bargaining"])
    assert cmd[1:4] == ["-m", "src.launch", ON_LOOPBACK]
    assert cmd[cmd.index("--main_process_ip") + 1] == "127.0.0.1"
    assert cmd[-4:] == ["-m", "stages.rollout", "--game", "bargaining"]
    if sys.platform.startswith("linux"):
        assert env["GLOO_SOCKET_IFNAME"] == "lo"
    # a multi-node run sets its own network up: its config file, or its accelerate arguments
    for options in ({"config_file": "multi.yaml"},
                    {"accelerate_args": "--num_machines 2 --main_process_ip 10.0.0.1"}):
        cmd, _ = command({**OPTIONS, "processes": "2", **options}, ["stages.rollout"])
        assert ON_LOOPBACK not in cmd and "127.0.0.1" not in cmd


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_two_processes_listen_on_loopback_only():
    from src.launch import OPTIONS, command

    cmd, env = command({**OPTIONS, "processes": "2"}, ["tests.loopback_probe"])
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("LISTENING "))
    addresses = json.loads(line.removeprefix("LISTENING "))
    assert addresses and all(a.startswith("0100007F:") for a in addresses), addresses


# Output folders follow the umask ---------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_atomic_dir_follows_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "models" / "rm") as tmp:
            (tmp / "weights.pt").write_bytes(b"\0")
    finally:
        os.umask(previous)
    assert (tmp_path / "models" / "rm").stat().st_mode & 0o777 == mode


# A full disk while a model folder is saved ---------------------------------------------------
NO_SPACE = os.strerror(errno.ENOSPC)


def safetensors_full_disk():
    from safetensors import SafetensorError

    return SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')


@pytest.mark.parametrize("error", [
    lambda: OSError(errno.ENOSPC, NO_SPACE),
    lambda: Exception("No space left on device (os error 28)"),  # the tokenizers library
])
def test_full_disk_in_the_adapter_export_is_one_line(tiny_model_dir, workdir, monkeypatch, capsys,
                                                     error):
    from src.config import run_main

    def full(*args, **kwargs):
        raise error()

    monkeypatch.setattr("transformers.tokenization_utils_tokenizers.TokenizersBackend."
                        "save_pretrained", full)
    data = {"twenty_questions": records_by_game(4)["twenty_questions"]}
    paths = offline_paths(workdir, tiny_model_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: train_offline(data, "aria", TINY_TRAIN, paths=paths))
    assert exit_info.value.code == 4
    err = capsys.readouterr().err  # after the progress bars of loading the model
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"error: {paths.output}: cannot write ({NO_SPACE})"
    assert latest_checkpoint(paths.checkpoints).name == "step-0000002"  # nothing lost
    assert not paths.output.exists()


@pytest.mark.parametrize("error", [lambda: OSError(errno.ENOSPC, NO_SPACE), safetensors_full_disk])
def test_full_disk_in_prepare_model_is_one_line(workdir, monkeypatch, capsys, error):
    def full(*args, **kwargs):
        raise error()

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", full)
    set_params(workdir, **{"model.source": "packaged:tiny-random-llama"})
    code, err = run_stage("prepare_model", [], monkeypatch, capsys)
    assert code == 4 and one_line_error(err) == f"error: models/base: cannot write ({NO_SPACE})"
    assert not (workdir / "models" / "base").exists() and not (workdir / "models" / "base.tmp").exists()
