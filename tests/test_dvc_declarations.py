"""dvc.yaml declares what each stage reads, and params.yaml loads into the stages' dataclasses.

A code file a stage imports but does not list in its ``deps`` leaves results stale while
``dvc status`` says up to date; a params section it reads but does not list is the same for
params. Both are checked statically (``ast`` on ``src/`` and ``stages/``): nothing is run or
imported. The config test loads params.yaml, and params.yaml with each profile applied, into
the dataclasses the stage scripts load (this one imports the library, no model is loaded).
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("src", "stages")
LAUNCHER = "src.launch"
PARAMS = "params.yaml"


# --- dvc.yaml -------------------------------------------------------------------------------

def read_dvc(path: Path = ROOT / "dvc.yaml") -> dict:
    return yaml.safe_load(path.read_text())


def _lookup(data: dict, dotted: str):
    for key in dotted.split("."):
        data = data[key]
    return data


def _substitute(value, values: dict[str, str]):
    """``${item}`` / ``${item.key}`` / ``${a.b[0]}`` filled in from ``values``."""
    if isinstance(value, str):
        for key, item in values.items():
            value = value.replace("${" + key + "}", item)
        return value
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if isinstance(value, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in value.items()}
    return value


def _items(items, params: dict) -> list:
    if isinstance(items, str) and items.startswith("${") and items.endswith("}"):
        items = _lookup(params, items[2:-1])
    return items if isinstance(items, list) else list(items)


def expand_stages(dvc: dict, params: dict | None = None) -> dict[str, dict]:
    """Stage name (``name@item`` for foreach stages, ``name@a-b`` for matrix stages, as DVC
    names them) -> its body with ``${item}`` (``${item.key}``) filled in; lists such as
    ``${games.names}`` come from params.yaml, as does ``${train.seeds[0]}``."""
    import itertools

    params = params if params is not None else yaml.safe_load((ROOT / PARAMS).read_text())
    first_seed = {"${train.seeds[0]}": str(params["train"]["seeds"][0])}

    def fill(body, values: dict[str, str]):
        return _substitute(_substitute(body, values), {k[2:-1]: v for k, v in first_seed.items()})

    out = {}
    for name, body in dvc["stages"].items():
        if "matrix" in body:
            axes = {key: _items(items, params) for key, items in body["matrix"].items()}
            rest = {k: v for k, v in body.items() if k != "matrix"}
            for combo in itertools.product(*(list(enumerate(v)) for v in axes.values())):
                values, parts = {}, []
                for key, (index, v) in zip(axes, combo):
                    if isinstance(v, dict):  # DVC names a mapping item <axis><index>
                        values.update({f"item.{key}.{k}": str(x) for k, x in v.items()})
                        parts.append(f"{key}{index}")
                    else:
                        values[f"item.{key}"] = str(v)
                        parts.append(str(v))
                out[f"{name}@{'-'.join(parts)}"] = fill(rest, values)
        elif "foreach" in body:
            for item in _items(body["foreach"], params):
                out[f"{name}@{item}"] = fill(body["do"], {"item": str(item)})
        else:
            out[name] = fill(body, {})
    return out


def stage_modules(cmd: str) -> list[str]:
    """The modules a stage command runs: ``python -m stages.X ...`` -> [stages.X];
    ``python -m src.launch ... -- stages.X ...`` -> [src.launch, stages.X]."""
    words = cmd.split()
    if words[:2] != ["python", "-m"] or len(words) < 3:
        raise ValueError(f"not a 'python -m' command: {cmd!r}")
    if words[2] == LAUNCHER:
        if "--" not in words or words.index("--") + 1 >= len(words):
            raise ValueError(f"no stage module after '--' in {cmd!r}")
        return [LAUNCHER, words[words.index("--") + 1]]
    return [words[2]]


def declared_paths(entries) -> list[str]:
    """deps/outs entries: plain paths or one-key mappings ``path: {options}``."""
    paths = []
    for entry in entries or []:
        paths.extend([entry] if isinstance(entry, str) else list(entry))
    return [p.rstrip("/") for p in paths]


def declared_params(entries) -> list[str]:
    """params entries: ``key`` / ``a.b`` (params.yaml) or ``{file: [keys]}``; params.yaml only."""
    keys = []
    for entry in entries or []:
        if isinstance(entry, str):
            keys.append(entry)
        else:
            for file, names in entry.items():
                if file == PARAMS:
                    keys.extend(names or [])
    return keys


# --- import closure -------------------------------------------------------------------------

def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file of a module inside this repo's packages, or None (third party, stdlib)."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _module_name(file: Path, root: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _with_parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def parse(file: Path) -> ast.Module:
    return ast.parse(file.read_text(), str(file))


@lru_cache(maxsize=None)
def imported_modules(file: Path, root: Path = ROOT) -> frozenset[str]:
    """Every module ``file`` imports, at top level or inside functions; ``from m import x``
    also yields ``m.x`` (x may be a submodule); relative imports resolved."""
    tree = parse(file)
    this = _module_name(file, root)
    package = this if file.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(found)


@lru_cache(maxsize=None)
def _closure(modules: tuple[str, ...], root: Path) -> frozenset[Path]:
    seen: set[Path] = set()
    todo = [m for start in modules for m in _with_parents(start)]
    while todo:
        module = todo.pop()
        file = module_file(module, root)
        if file is None or file in seen:
            continue
        seen.add(file)
        for name in imported_modules(file, root):
            todo.extend(_with_parents(name))
    return frozenset(seen)


def import_closure(modules: list[str], root: Path = ROOT) -> frozenset[Path]:
    """Files of ``src/`` and ``stages/`` that running ``modules`` imports, transitively."""
    return _closure(tuple(modules), root)


@lru_cache(maxsize=None)
def has_code(file: Path) -> bool:
    """False for a file that is only a docstring (a package marker): changing it into code makes
    the closure test ask for it in deps."""
    body = parse(file).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return bool(body)


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep + "/") for dep in deps)


def stage_closure(body: dict, root: Path = ROOT) -> set[str]:
    return {f.relative_to(root).as_posix()
            for f in import_closure(stage_modules(body["cmd"]), root) if has_code(f)}


def missing_deps(stages: dict[str, dict], root: Path = ROOT) -> dict[str, list[str]]:
    """Stage -> code files it imports that its deps do not cover."""
    problems = {}
    for name, body in stages.items():
        deps = declared_paths(body.get("deps"))
        missing = sorted(p for p in stage_closure(body, root) if not covered(p, deps))
        if missing:
            problems[name] = missing
    return problems


def unused_deps(stages: dict[str, dict], root: Path = ROOT) -> dict[str, list[str]]:
    """Stage -> declared code deps (under src/ or stages/) that cover no file it imports: a
    change there reruns the stage for nothing."""
    problems = {}
    for name, body in stages.items():
        imported = [f.relative_to(root).as_posix()
                    for f in import_closure(stage_modules(body["cmd"]), root)]
        unused = sorted(dep for dep in declared_paths(body.get("deps"))
                        if dep.split("/")[0] in PACKAGES and not any(covered(f, [dep]) for f in imported))
        if unused:
            problems[name] = unused
    return problems


# --- params read by a stage -----------------------------------------------------------------

def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        return func.attr if isinstance(func, ast.Attribute) else None
    return None


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _params_path(node: ast.AST, consumed: set[int]) -> list[str] | None:
    """Keys read from ``read_params()`` by ``read_params().get("a")``, ``(... or {}).get("b")``,
    ``read_params()["a"]``: ["a", "b"]; None when ``node`` is not such a chain."""
    while isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        node = node.values[0]
    if _call_name(node) == "read_params":
        return []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        inner, key = node.func.value, _const_str(node.args[0] if node.args else None)
    elif isinstance(node, ast.Subscript):
        inner, key = node.value, _const_str(node.slice)
    else:
        return None
    if key is None:
        return None
    head = _params_path(inner, consumed)
    if head is None:
        return None
    consumed.add(id(_strip_or(inner)))
    return head + [key]


def _strip_or(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        node = node.values[0]
    return node


def params_read(files) -> set[str]:
    keys: set[str] = set()
    for file in files:
        keys.update(_params_read_file(Path(file)))
    return keys


@lru_cache(maxsize=None)
def _params_read_file(file: Path) -> frozenset[str]:
    """Params keys that code reads: ``load_section("name", ...)`` -> name; read_params() chains
    -> their dotted key (``train.lora``)."""
    keys: set[str] = set()
    chains: list[tuple[ast.AST, list[str]]] = []
    consumed: set[int] = set()
    for node in ast.walk(parse(file)):
        if _call_name(node) == "load_section" and _const_str(node.args[0] if node.args else None):
            keys.add(node.args[0].value)
        path = _params_path(node, consumed) if isinstance(node, (ast.Call, ast.Subscript)) else None
        if path:
            chains.append((node, path))
    keys.update(".".join(path) for node, path in chains if id(node) not in consumed)
    return frozenset(keys)


def params_problems(stages: dict[str, dict], root: Path = ROOT) -> dict[str, list[str]]:
    """Stage -> params it reads but does not declare (``reads X, undeclared``) and declared
    entries it never reads (``declares X, never read``). ``model`` read is covered by ``model``
    or ``model.dtype``; a declared ``train.lora`` is read by a read ``train`` or ``train.lora``."""
    problems = {}
    for name, body in stages.items():
        files = import_closure(stage_modules(body["cmd"]), root)
        read = params_read(files)
        declared = declared_params(body.get("params"))
        found = [f"reads '{key}', undeclared" for key in sorted(read)
                 if not any(d == key or d.startswith(key + ".") or key.startswith(d + ".")
                            for d in declared)]
        found += [f"declares '{d}', never read" for d in declared
                  if not any(d == key or d.startswith(key + ".") for key in read)]
        if found:
            problems[name] = found
    return problems


# --- tests: dvc.yaml ------------------------------------------------------------------------

def _report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"  {stage}: {', '.join(items)}" for stage, items in sorted(problems.items()))


def test_every_stage_runs_a_module_of_this_repo():
    for name, body in expand_stages(read_dvc()).items():
        for module in stage_modules(body["cmd"]):
            assert module_file(module) is not None, f"{name}: no file for module {module}"


def test_deps_cover_the_import_closure():
    problems = missing_deps(expand_stages(read_dvc()))
    assert not problems, "code files imported by a stage but missing from its deps:\n" + _report(problems)


def test_code_deps_are_imported():
    problems = unused_deps(expand_stages(read_dvc()))
    assert not problems, "code deps a stage never imports:\n" + _report(problems)


def test_params_read_are_params_declared():
    problems = params_problems(expand_stages(read_dvc()))
    assert not problems, "params a stage reads vs the params it declares:\n" + _report(problems)


def read_params_yaml() -> dict:
    return yaml.safe_load((ROOT / PARAMS).read_text())


def test_per_game_stages_run_the_registered_games():
    """dvc.yaml's per-game stages iterate over params.yaml's games.names, which lists the
    registered games (src/game_names.py, itself checked against the registry in test_games)."""
    from src.game_names import GAME_NAMES

    assert read_params_yaml()["games"]["names"] == list(GAME_NAMES)
    for name, body in read_dvc()["stages"].items():
        if "foreach" in body:
            assert body["foreach"] in ("${games.names}", "${train.seeds}"), name
        if "matrix" in body:
            assert body["matrix"] in ({"variant": "${train.variants}", "seed": "${train.seeds}"},
                                      {"kind": "${dpo.kinds}", "seed": "${train.seeds}"},
                                      {"it": "${iterate.iterations}", "seed": "${train.seeds}"}), name


def test_per_game_stages_declare_only_their_game():
    """A per-game stage plays one game: another game's settings must not rerun it."""
    for name, body in read_dvc()["stages"].items():
        per_game = body.get("foreach") == "${games.names}" or "game" in body.get("matrix", {})
        if per_game:
            declared = declared_params(body.get("do", body).get("params"))
            games = {key for key in declared if key.partition(".")[0] == "games"}
            assert games <= {"games.${item}", "games.${item.game}", "games.oracle"}, (name, games)


def model_deps(body: dict) -> set[str]:
    return {dep for dep in declared_paths(body.get("deps")) if dep.startswith("models/")}


def test_evaluate_deps_are_the_policies_evaluated():
    """evaluate@<game>-<seed> depends on the base model and on the seed's policy folder, which
    holds every variant it evaluates (train.variants and train-dpo's dpo_<kind> for dpo.kinds);
    evaluate.policies names exactly those."""
    params = read_params_yaml()
    cfg = params["evaluate"]
    for name, body in expand_stages(read_dvc()).items():
        if name.startswith("evaluate@"):
            seed = name.rsplit("@", 1)[1]
            folders = {p.replace("{seed}", seed) for p in cfg["policies"].values()} | {cfg["opponent"]}
            deps = model_deps(body)
            assert all(any(f == d or f.startswith(d + "/") for d in deps) for f in folders), name
            trained = {f for f in folders if f.startswith("models/policies/")}
            variants = params["train"]["variants"] + [f"dpo_{k}" for k in params["dpo"]["kinds"]]
            assert trained == {f"models/policies/s{seed}/{v}" for v in variants}, name


# What each per-seed stage writes per game (a GameArtifacts of iteration 1 or of a later one)
PER_SEED_WRITES = {
    "rollout": lambda g: [g.rollouts, g.rollout_metrics],
    "cluster": lambda g: [g.cluster_dir, g.cluster_metrics],
    "select-k": lambda g: [g.chosen_k, g.plot_dir("select_k"), g.plot_png("select_k")],
    "label": lambda g: [g.labels],
    "build": lambda g: [g.records, g.build_metrics],
    "evaluate": lambda g: [g.eval_records, g.eval_metrics],
}


def written_paths(stage: str) -> set[str]:
    """What a stage writes, from src/paths.py: a per-seed stage (``rollout@3``) writes each
    game's files into its seed's folders, declared as those folders."""
    from src import paths
    from src.game_names import GAME_NAMES

    base, _, item = stage.partition("@")
    first = int(read_params_yaml()["train"]["seeds"][0])
    if base.startswith("iterate-"):
        return iteration_written_paths(base.removeprefix("iterate-"), item)
    if base in PER_SEED_WRITES:
        files = [f for game in GAME_NAMES
                 for f in PER_SEED_WRITES[base](paths.GameArtifacts(game, int(item)))]
        folders = {str(f.parent) if f.parent.name == f"s{item}" else str(f.parent.parent) for f in files}
        assert all(any(str(f).startswith(d + "/") for d in folders) for f in files)
        return folders
    if base == "grad-variance":
        return {str(paths.GameArtifacts(item, first).grad_variance_metrics)}
    if base == "train-offline":
        variant, _, seed = item.rpartition("-")
        run = paths.RunPaths.for_variant(variant, int(seed))
        return {str(p) for p in (run.output, run.metrics, run.curves, run.live / "plots/metrics")}
    if base == "train-dpo":
        kind, _, seed = item.rpartition("-")
        run = paths.DpoPaths(kind, int(seed))
        return {str(run.output), str(run.metrics)}
    online = paths.OnlinePaths.for_stage(first)
    return {str(p) for p in {
        "corpus": [paths.CORPUS, paths.CORPUS_METRICS],
        "check-params": [paths.PARAMS_CHECK],
        "prepare-model": [paths.BASE_MODEL, paths.PREPARE_MODEL_METRICS],
        "validate-base": [paths.BASE_VALIDATION],
        "train-rm": [paths.RM_MODEL, paths.TRAIN_RM_METRICS],
        "train-online": [online.output, online.metrics, online.live / "plots/metrics"],
        "report": [paths.REPORTS / "results.md", paths.REPORTS / "rates.png"],
    }[base]}


def iteration_written_paths(kind: str, item: str) -> set[str]:
    """What an iteration stage writes (``iterate-build@it0-3``: the first entry of
    iterate.iterations, training seed 3): the same files as iteration 1's stage of that kind,
    in the iteration's run folders (src/paths.py)."""
    from src import paths
    from src.game_names import GAME_NAMES

    if kind == "start":
        return {str(paths.iteration_policy(int(item), 1))}
    entry, _, seed = item.partition("-")
    iteration = read_params_yaml()["iterate"]["iterations"][int(entry.removeprefix("it"))]["iteration"]
    if kind == "train":
        run = paths.RunPaths.for_variant("aria", int(seed), iteration)
        return {str(p) for p in (run.output, run.metrics, run.curves, run.live / "plots/metrics")}
    files = [f for game in GAME_NAMES
             for f in PER_SEED_WRITES[kind](paths.GameArtifacts(game, int(seed), iteration))]
    run = paths.run_dir(int(seed), iteration)
    folders = {str(f.parent) if str(f.parent).endswith(run) else str(f.parent.parent) for f in files}
    assert all(any(str(f).startswith(d + "/") for d in folders) for f in files)
    return folders


def test_outputs_declared_are_the_paths_written():
    for name, body in expand_stages(read_dvc()).items():
        declared = {p for key in ("outs", "metrics", "plots") for p in declared_paths(body.get(key))}
        assert declared == written_paths(name), name


def test_check_params_runs_first_on_every_repro_and_feeds_no_stage():
    """check-params validates the whole params.yaml (DVC sees only declared params): always
    changed, so every repro runs it, first; no stage reads its output, so nothing reruns."""
    from src.paths import PARAMS_CHECK

    stages = read_dvc()["stages"]
    name, body = next(iter(stages.items()))
    assert name == "check-params" and body["always_changed"] is True
    assert stage_modules(body["cmd"]) == ["stages.check_params"]
    assert not body.get("params")
    for other, other_body in expand_stages(read_dvc()).items():
        if other != name:
            assert str(PARAMS_CHECK) not in declared_paths(other_body.get("deps")), other


# --- self-checks: the checks above fail on a broken dvc.yaml --------------------------------

def _rollout_stage(dvc: dict) -> dict:
    return dvc["stages"]["rollout"]["do"] if "do" in dvc["stages"]["rollout"] else dvc["stages"]["rollout"]


def test_closure_check_reports_a_dropped_dep():
    dvc = read_dvc()
    deps = _rollout_stage(dvc)["deps"]
    deps.remove("src/policy")
    problems = missing_deps(expand_stages(dvc))
    rollouts = [name for name in problems if name.startswith("rollout")]
    assert rollouts and all("src/policy/policy.py" in problems[name] for name in rollouts), problems
    assert all(name.startswith("rollout") for name in problems), problems


def test_unused_check_reports_an_added_dep():
    dvc = read_dvc()
    dvc["stages"]["report"]["deps"].append("src/training/online.py")
    assert unused_deps(expand_stages(dvc)) == {"report": ["src/training/online.py"]}


def test_closure_check_reports_a_transitive_import():
    """cluster imports src/rollout only through src/intention (a library module): without the
    package dep the check names the file it reached transitively."""
    dvc = read_dvc()
    deps = dvc["stages"]["cluster"]["do"]["deps"]
    deps.remove("src/rollout")
    problems = missing_deps(expand_stages(dvc))
    assert any(name.startswith("cluster@") for name in problems), problems
    assert all("src/rollout/format.py" in files for files in problems.values()), problems


def test_closure_follows_submodules_relative_and_function_imports(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "stages").mkdir()
    files = {
        "src/__init__.py": '"""docstring only: not a dep."""\n',
        "src/pkg/__init__.py": "X = 1\n",
        "src/pkg/a.py": "from . import b\nfrom .c import thing\n",
        "src/pkg/b.py": "B = 1\n",
        "src/pkg/c.py": "thing = 1\n",
        "src/lazy.py": "def f():\n    import src.deep\n",
        "src/deep.py": "D = 1\n",
        "src/unused.py": "",
        "stages/__init__.py": "",
        "stages/s.py": "from src.pkg import a\nfrom src import lazy\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    stage = {"cmd": "python -m stages.s --x 1", "deps": ["stages/s.py", "src/pkg"]}
    assert stage_closure(stage, tmp_path) == {"stages/s.py", "src/pkg/__init__.py", "src/pkg/a.py",
                                              "src/pkg/b.py", "src/pkg/c.py", "src/lazy.py", "src/deep.py"}
    assert missing_deps({"s": stage}, tmp_path) == {"s": ["src/deep.py", "src/lazy.py"]}


def test_params_check_reports_undeclared_and_unread_sections():
    dvc = read_dvc()
    params = _rollout_stage(dvc)["params"]
    params.remove("limits")
    params.append("report")
    problems = params_problems(expand_stages(dvc))
    assert problems and all(name.startswith("rollout@") for name in problems), problems
    assert all(items == ["reads 'limits', undeclared", "declares 'report', never read"]
               for items in problems.values()), problems


def test_params_read_finds_nested_read_params_keys(tmp_path):
    file = tmp_path / "s.py"
    file.write_text('x = to_config(C, (read_params().get("train") or {}).get("lora"), "w")\n'
                    'y = load_section("model", M)\nz = read_params()["report"]\n')
    assert params_read([file]) == {"train.lora", "model", "report"}


# --- config: params.yaml and every profile load into the stages' dataclasses ----------------

def config_loaders(root: Path = ROOT) -> dict[str, set[tuple[str, str]]]:
    """Params key -> {(module, class)} from the stage scripts' ``load_section("key", Class)`` and
    ``to_config(Class, read_params()...)`` calls, the class resolved through their imports."""
    loaders: dict[str, set[tuple[str, str]]] = {}
    for file in sorted((root / "stages").glob("*.py")):
        tree = parse(file)
        origin = {alias.asname or alias.name: (node.module, alias.name)
                  for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                  for alias in node.names}
        for node in ast.walk(tree):
            name = _call_name(node)
            if name == "load_section" and len(node.args) >= 2:
                key, cls = _const_str(node.args[0]), node.args[1]
            elif name == "to_config" and len(node.args) >= 2:
                path = _params_path(node.args[1], set())
                key, cls = (".".join(path) if path else None), node.args[0]
            else:
                continue
            if key and isinstance(cls, ast.Name) and cls.id in origin:
                loaders.setdefault(key, set()).add(origin[cls.id])
    return loaders


def _profile_script():
    spec = importlib.util.spec_from_file_location("aria_profile_script", ROOT / "scripts" / "profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROFILES = [None] + sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))


def _params_file(tmp_path: Path, profile: str | None) -> Path:
    """params.yaml, with ``profile`` merged in by scripts/profile.py's own merge."""
    path = tmp_path / PARAMS
    shutil.copy(ROOT / PARAMS, path)
    if profile is not None:
        _profile_script().apply_profile(profile, path)
    return path


def load_all_sections(path: Path) -> list[str]:
    """Load every section of a params file through src.config into the stages' dataclasses
    (``launch`` through src.launch's parser); the sections loaded."""
    from src.config import check_params, load_section, read_params, to_config
    from src.launch import parse

    check_params(path)
    data = read_params(path)
    loaders = config_loaders()
    loaded = []
    for key, classes in sorted(loaders.items()):
        top, _, rest = key.partition(".")
        for module, cls_name in sorted(classes):
            cls = getattr(importlib.import_module(module), cls_name)
            if rest:
                to_config(cls, _lookup(data[top], rest), f"{path}: {key}")
            else:
                load_section(key, cls, path)
        loaded.append(key)
    if "launch" in data:
        argv = [word for k, v in data["launch"].items() for word in (f"--{k}", str(v))]
        parse(argv + ["--", "stages.rollout"])
        loaded.append("launch")
    return loaded


@pytest.mark.parametrize("profile", PROFILES, ids=[p or "params.yaml" for p in PROFILES])
def test_every_section_loads_into_its_dataclass(tmp_path, profile):
    path = _params_file(tmp_path, profile)
    sections = set(yaml.safe_load(path.read_text()))
    unloaded = sections - {key.partition(".")[0] for key in load_all_sections(path)}
    assert not unloaded, f"sections no stage loads into a dataclass: {sorted(unloaded)}"


def test_every_profile_section_exists_in_params():
    params = set(yaml.safe_load((ROOT / PARAMS).read_text()))
    for profile in PROFILES[1:]:
        data = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text()) or {}
        assert set(data) <= params, f"profiles/{profile}.yaml: {sorted(set(data) - params)}"


def test_loader_rejects_a_misspelled_key(tmp_path):
    from src.config import ConfigError

    path = tmp_path / PARAMS
    text = (ROOT / PARAMS).read_text()
    assert "\n  episodes: " in text
    path.write_text(text.replace("\n  episodes: ", "\n  episodez: ", 1))
    with pytest.raises(ConfigError, match=r"episodez"):
        load_all_sections(path)
    path.write_text(text.replace("\nselect_k:", "\nselect-k:", 1))
    with pytest.raises(ConfigError, match=r"select-k"):
        load_all_sections(path)


def test_profile_merge_rejects_a_misspelled_key():
    params = yaml.safe_load((ROOT / PARAMS).read_text())
    with pytest.raises(KeyError, match="rollout.episodez"):
        _profile_script().merge(copy.deepcopy(params), {"rollout": {"episodez": 3}})
