"""The report stage: every metric the paper's claims rest on, in one markdown file and one chart.

Inputs are the metrics files of earlier stages (never the data), so the report is cheap to
rebuild. A missing input stops the stage with one message listing every missing file and the
stage that writes it, rather than a half-empty report that looks complete.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from src.io_utils import InputError, atomic_path, read_json, write_text

GAMES = ["bargaining", "negotiation", "twenty_questions", "guess_my_city"]


@dataclass
class ReportConfig:
    games: list[str] = field(default_factory=lambda: list(GAMES))  # games in the report, in order
    dpi: int = 120  # resolution of reports/rates.png

    def validate(self) -> str | None:
        if not self.games:
            return "games must list at least one game"
        unknown = [g for g in self.games if g not in GAMES]
        if unknown:
            return f"games: unknown game '{unknown[0]}'; known games: {', '.join(GAMES)}"
        return None


SOURCES = {  # metrics folder -> the stage that writes it
    "eval": "evaluate",
    "build": "build",
    "grad_variance": "grad-variance",
    "select_k": "select-k",
}


def load_inputs(metrics_dir: Path | str, games: list[str]) -> dict[str, dict[str, dict]]:
    """``{folder: {game: metrics}}``; every missing file named in one InputError."""
    metrics_dir = Path(metrics_dir)
    paths = {(folder, g): metrics_dir / folder / f"{g}.json" for folder in SOURCES for g in games}
    missing = [f"{p} (stage {SOURCES[folder]}@{g})" for (folder, g), p in paths.items()
               if not p.exists()]
    if missing:
        raise InputError("report: missing inputs, run the stages that write them: "
                         + "; ".join(missing))
    inputs: dict[str, dict[str, dict]] = {folder: {} for folder in SOURCES}
    for (folder, g), p in paths.items():
        inputs[folder][g] = read_json(p)
    return inputs


def _interval(rate: dict) -> str:
    if rate["rate"] is None:
        return "n/a"
    return f"{100 * rate['rate']:.1f} [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}]"


def policy_names(evals: dict[str, dict]) -> list[str]:
    """Policies in the evaluation's order (params order), first-seen across games."""
    return list(dict.fromkeys(p for m in evals.values() for p in m["policy_order"]))


def evaluation_table(evals: dict[str, dict]) -> str:
    """Policies x games, main rate (win or success, %) with its 95 % Wilson interval."""
    games = list(evals)
    header = "| policy | " + " | ".join(f"{g} ({evals[g]['primary'].replace('_', ' ')})"
                                        for g in games) + " |"
    lines = [header, "|---" * (len(games) + 1) + "|"]
    for name in policy_names(evals):
        cells = [_interval(evals[g]["policies"][name][evals[g]["primary"]])
                 if name in evals[g]["policies"] else "—" for g in games]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


RATE_COLUMNS = ("win_rate", "tie_rate", "deal_rate", "success_rate", "invalid_move_rate")
VALUE_COLUMNS = {  # column -> how to read it from a policy's metrics
    "mean payoff share": lambda m: m["mean_payoff_share"]["mean"],
    "mean turns to solve": lambda m: m["mean_turns_to_solve"],
    "mean reward": lambda m: m["mean_reward"],
}


def detail_table(game: str, metrics: dict) -> str:
    """Every metric of one game, one row per policy (rates in %, with intervals)."""
    policies = [metrics["policies"][name] for name in metrics["policy_order"]]
    rates = [r for r in RATE_COLUMNS if r in policies[0]]
    values = {}
    for column, read in VALUE_COLUMNS.items():
        try:
            values[column] = [read(m) for m in policies]
        except KeyError:
            continue
    lines = ["| policy | " + " | ".join([r.replace("_", " ") for r in rates] + list(values))
             + " |", "|---" * (1 + len(rates) + len(values)) + "|"]
    for row, (name, m) in enumerate(zip(metrics["policy_order"], policies)):
        cells = [_interval(m[r]) for r in rates]
        cells += ["n/a" if v[row] is None else f"{v[row]:.3g}" for v in values.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"**{game}** ({metrics['episodes_per_policy']} episodes per policy)\n\n" + "\n".join(lines)


def variance_table(builds: dict[str, dict]) -> str:
    """Raw vs aggregated reward variance over action instances, per game and player (SPEC 8)."""
    lines = ["| game | player | k | raw variance | aggregated variance | ratio | keys "
             "| instances per key |", "|---" * 8 + "|"]
    for game, m in builds.items():
        for player, v in m["players"].items():
            ratio = "n/a" if v["variance_ratio"] is None else f"{v['variance_ratio']:.3f}"
            lines.append(f"| {game} | {player} | {v['k']} | {v['raw_variance']:.4f} "
                         f"| {v['aggregated_variance']:.4f} | {ratio} | {v['keys']} "
                         f"| {v['mean_instances_per_key']:.2f} |")
    return "\n".join(lines)


def gradient_variance_table(grads: dict[str, dict]) -> str:
    """Aggregated/raw ratio of minibatch policy-gradient variance at the start state, with its
    episode-bootstrap 95 % interval, without and with a constant baseline (SPEC 13)."""
    def cell(part: dict | None) -> str:
        if not part or part["ratio"] is None:
            return "n/a"
        low, high = part["interval"]
        return f"{part['ratio']:.3f} [{low:.3f}, {high:.3f}]"

    lines = ["| game | records (episodes) | ratio, no baseline | ratio, constant baseline "
             "| note |", "|---" * 5 + "|"]
    for game, m in grads.items():
        lines.append(f"| {game} | {m['records']} ({m['episodes']}) | {cell(m['no_baseline'])} "
                     f"| {cell(m['constant_baseline'])} | {m.get('note', '')} |")
    return "\n".join(lines)


def chosen_k_table(select: dict[str, dict]) -> str:
    """The k each role was cut at, how it was chosen, and any note select-k left."""
    lines = ["| game | method | chosen k per role | note |", "|---" * 4 + "|"]
    for game, m in select.items():
        ks = ", ".join(f"{role} {k}" for role, k in m["k"].items())
        lines.append(f"| {game} | {m['method']} | {ks} | {m.get('note', '')} |")
    return "\n".join(lines)


def rates_chart(evals: dict[str, dict], path: Path | str, dpi: int) -> None:
    """Grouped bars: main rate per game and policy, Wilson intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games, names = list(evals), policy_names(evals)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(games)), 4.0))
    for j, name in enumerate(names):
        xs, heights, below, above = [], [], [], []
        for i, g in enumerate(games):
            rate = evals[g]["policies"].get(name, {}).get(evals[g]["primary"])
            if rate is None or rate["rate"] is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            heights.append(100 * rate["rate"])
            below.append(100 * (rate["rate"] - rate["low"]))
            above.append(100 * (rate["high"] - rate["rate"]))
        # error bars in the bar's colour: a 0 % bar is still told apart by its interval
        ax.bar(xs, heights, width, yerr=[below, above], capsize=3, label=name, color=f"C{j}",
               ecolor=f"C{j}")
    ax.set_xticks(range(len(games)),
                  [f"{g}\n({evals[g]['primary'].replace('_', ' ')})" for g in games])
    ax.set_ylabel("rate (%), 95 % Wilson interval")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small", ncols=min(len(names), 5), loc="upper center",
              bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def render(inputs: dict[str, dict[str, dict]]) -> str:
    evals = inputs["eval"]
    sections = [
        "# ARIA results",
        "## Evaluation\n\nMain rate per game (%) with 95 % Wilson intervals. Two-player games: "
        "the policy plays both seats against the base model; single-agent games: fixed targets."
        "\n\n" + evaluation_table(evals) + "\n\n![rates](rates.png)",
        "### Per game\n\n" + "\n\n".join(detail_table(g, m) for g, m in evals.items()),
        "## Reward variance (raw vs aggregated)\n\n" + variance_table(inputs["build"]),
        "## Policy-gradient variance (raw vs aggregated rewards)\n\n"
        + gradient_variance_table(inputs["grad_variance"]),
        "## Chosen number of intentions k\n\n" + chosen_k_table(inputs["select_k"]),
    ]
    return "\n\n".join(sections) + "\n"


def write_report(metrics_dir: Path | str, out_dir: Path | str, cfg: ReportConfig) -> None:
    inputs = load_inputs(metrics_dir, cfg.games)
    out_dir = Path(out_dir)
    rates_chart(inputs["eval"], out_dir / "rates.png", cfg.dpi)
    write_text(out_dir / "results.md", render(inputs))
