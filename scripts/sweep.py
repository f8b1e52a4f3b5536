"""Summarise a `dvc exp run --queue` sweep: aria − raw (main rate, pp) against one param.

    dvc exp run --queue -S select_k.method=fixed -S 'select_k.fixed_k=4,8,16,32,64,100' \\
        -S 'train.seeds=[0,1,2]' evaluate@0 evaluate@1 evaluate@2
    dvc queue start -j 1 && dvc queue status          # wait until every experiment is done
    python -m scripts.sweep select_k.fixed_k --out reports/sweeps/fixed_k

reads every finished experiment of the current commit (its params.yaml and its per-seed
evaluation metrics, straight from the experiment's git commit), and writes ``<out>.md`` (one row
per value and game: the per-seed differences, their mean and 95 % t interval) and ``<out>.png``
(the same, one panel per game). For the k sweep the k that select-k chose in the workspace's
committed run (split_score, median over seeds and roles) is marked.
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import yaml

from src.evaluation import stats
from src.game_names import GAME_NAMES
from src.io_utils import write_text


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def experiments() -> list[str]:
    """The commits of the experiments whose baseline is HEAD."""
    head = git("rev-parse", "HEAD").strip()
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").split("\n")
    return [rev for ref, _, rev in (line.partition(" ") for line in refs if line)
            if f"/{head[2:]}/" in ref or f"/{head}/" in ref]


def lookup(params: dict, dotted: str):
    for key in dotted.split("."):
        params = params[key]
    return params


def differences(rev: str, seeds: list[int]) -> dict[str, list[float]]:
    """{game: aria − raw main rate (pp) per seed} in one experiment."""
    out: dict[str, list[float]] = {}
    for game in GAME_NAMES:
        diffs = []
        for seed in seeds:
            m = json.loads(git("show", f"{rev}:metrics/eval/s{seed}/{game}.json"))
            rate = {p: m["policies"][p][m["primary"]]["rate"] for p in ("aria", "raw")}
            diffs.append(100 * (rate["aria"] - rate["raw"]))
        out[game] = diffs
    return out


def chosen_k(game: str) -> float | None:
    """The median k select-k chose for ``game`` in the committed run (all seeds and roles)."""
    ks = [k for path in sorted(Path("metrics/select_k").glob(f"s*/{game}.json"))
          for k in json.loads(path.read_text())["k"].values()]
    return float(sorted(ks)[len(ks) // 2]) if ks else None


def summarise(param: str, out: Path) -> None:
    rows: dict[float, dict[str, list[float]]] = {}
    for rev in experiments():
        params = yaml.safe_load(git("show", f"{rev}:params.yaml"))
        try:
            rows[lookup(params, param)] = differences(rev, params["train"]["seeds"])
        except subprocess.CalledProcessError:
            continue  # an experiment that failed or did not evaluate
    if not rows:
        raise SystemExit(f"no finished experiment of HEAD sets {param}")
    lines = [f"# aria − raw against {param}", "",
             f"Main rate difference (pp) per training seed; mean and 95 % t interval over seeds. "
             f"Made by `python -m scripts.sweep {param} --out {out}` from {len(rows)} experiments "
             f"of commit {git('rev-parse', '--short', 'HEAD').strip()}.", "",
             f"| {param} | game | per seed | mean [95 % t interval] |", "|---|---|---|---|"]
    for value in sorted(rows):
        for game, diffs in rows[value].items():
            d = stats.paired_seed_difference(diffs, [0.0] * len(diffs))
            lines.append(f"| {value} | {game} | {', '.join(f'{x:+.1f}' for x in diffs)} | "
                         f"{d['mean_diff']:+.1f} {interval(d)} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    plot(param, rows, out.with_suffix(".png"))


def interval(d: dict) -> str:
    return f"[{d['ci_t'][0]:+.1f}, {d['ci_t'][1]:+.1f}]" if d["ci_t"] else "(one seed)"


def plot(param: str, rows: dict[float, dict[str, list[float]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = sorted(rows)
    fig, axes = plt.subplots(1, len(GAME_NAMES), figsize=(4 * len(GAME_NAMES), 3.4), sharey=True)
    for ax, game in zip(axes, GAME_NAMES):
        summaries = [stats.paired_seed_difference(rows[v][game], [0.0] * len(rows[v][game]))
                     for v in values]
        means = [s["mean_diff"] for s in summaries]
        low = [s["mean_diff"] - (s["ci_t"] or [s["mean_diff"]] * 2)[0] for s in summaries]
        high = [(s["ci_t"] or [s["mean_diff"]] * 2)[1] - s["mean_diff"] for s in summaries]
        ax.errorbar(values, means, yerr=[low, high], marker="o", capsize=3)
        for v in values:
            ax.scatter([v] * len(rows[v][game]), rows[v][game], s=8, color="grey", alpha=0.6)
        ax.axhline(0, color="black", lw=0.8)
        k = chosen_k(game) if param == "select_k.fixed_k" else None
        if k is not None:
            ax.axvline(k, color="tab:red", ls="--", lw=1, label=f"chosen k (median) {k:g}")
            ax.legend(fontsize=7)
        ax.set_xscale("log")
        ax.set_title(game.replace("_", " "), fontsize=9)
        ax.set_xlabel(param)
    axes[0].set_ylabel("aria − raw, main rate (pp)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("param", help="the swept param, dotted (select_k.fixed_k, rollout.episodes)")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = parser.parse_args()
    summarise(args.param, args.out)


if __name__ == "__main__":
    main()
