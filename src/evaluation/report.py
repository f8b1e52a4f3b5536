"""The report stage: every metric the paper's claims rest on, in one markdown file and one chart.

Inputs are the metrics files of earlier stages (never the data), so the report is cheap to
rebuild. A missing input stops the stage with one message listing every missing file and the
stage that writes it, rather than a half-empty report that looks complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from src.game_names import GAME_NAMES
from src.io_utils import InputError, atomic_path, read_json, write_text

GAMES = list(GAME_NAMES)


@dataclass
class SupportConfig:
    """The least data a verdict stands on: below it the verdict is "insufficient data" with the
    counts, whatever the interval says (a ratio from one rewarded record has a zero-width
    interval that looks decisive)."""
    gradient_records: int  # grad-variance: sampled records with a non-zero raw weight
    gradient_episodes: int  # grad-variance: distinct episodes among those records
    max_share_without_ratio: float  # grad-variance: bootstrap resamples without a ratio; above this share the interval is unreliable
    rm_held_out_episodes: int  # train-rm: held-out episodes behind its comparison with the per-game mean
    online_episodes: int  # train-online: self-play episodes in all; fewer make a smoke run, not a result

    def validate(self) -> str | None:
        if min(self.gradient_records, self.gradient_episodes, self.rm_held_out_episodes,
               self.online_episodes) < 1 or not 0 <= self.max_share_without_ratio < 1:
            return "need counts >= 1 and 0 <= max_share_without_ratio < 1"
        return None


@dataclass
class ReportConfig:
    games: list[str]  # games in the report, in order
    dpi: int  # resolution of reports/rates.png
    support: SupportConfig  # the least data each kind of verdict needs

    def validate(self) -> str | None:
        if not self.games:
            return "games must list at least one game"
        unknown = [g for g in self.games if g not in GAMES]
        if unknown:
            return f"games: unknown game '{unknown[0]}'; known games: {', '.join(GAMES)}"
        if self.dpi < 1:
            return f"dpi must be a positive integer, got {self.dpi}"
        return None


SOURCES = {  # metrics folder -> the stage that writes it
    "eval": "evaluate",
    "build": "build",
    "grad_variance": "grad-variance",
    "select_k": "select-k",
}


TRAINING = {  # optional whole-run metrics -> file under metrics/
    "aria": "train_offline/aria.json", "raw": "train_offline/raw.json",
    "bc": "train_offline/bc.json", "rm": "train_rm.json", "online": "train_online.json",
}


def load_training(metrics_dir: Path | str) -> dict[str, dict]:
    """The training metrics that exist (a report of a partial run says what is missing)."""
    paths = {name: Path(metrics_dir) / rel for name, rel in TRAINING.items()}
    return {name: read_json(p) for name, p in paths.items() if p.exists()}


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


RATE_COLUMNS = ("win_rate", "tie_rate", "deal_rate", "success_rate", "invalid_move_rate",
                "truncated_move_rate")


def _mean(value, n) -> str:
    """A mean with the count it is over: "0.52 (n = 14)"; n/a over nothing."""
    return "n/a" if value is None or not n else f"{value:.3g} (n = {n})"


VALUE_COLUMNS = {  # column -> the cell, read from a policy's metrics (every mean with its count)
    "mean payoff share": lambda m: _mean(m["mean_payoff_share"]["mean"], m["mean_payoff_share"]["n"]),
    "mean turns to solve": lambda m: _mean(m["mean_turns_to_solve"], m["success_rate"]["successes"]),
    "mean reward": lambda m: _mean(m["mean_reward"], m["episodes"]),
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
        cells += [v[row] for v in values.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = metrics["episodes_per_policy"]
    sizes = (f"{counts} episodes per policy" if isinstance(counts, int) else
             "episodes: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return f"**{game}** ({sizes})\n\n" + "\n".join(lines)


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

    def unused(part: dict | None) -> str:
        return "n/a" if not part else str(part.get("resamples_without_ratio", "?"))

    lines = ["| game | records (episodes) | rewarded records (episodes) | ratio, no baseline "
             "| ratio, constant baseline | resamples without ratio | note |", "|---" * 7 + "|"]
    for game, m in grads.items():
        lines.append(f"| {game} | {m['records']} ({m['episodes']}) "
                     f"| {m.get('records_with_nonzero_weight', '?')} "
                     f"({m.get('episodes_with_nonzero_weight', '?')}) | {cell(m['no_baseline'])} "
                     f"| {cell(m['constant_baseline'])} | {unused(m['no_baseline'])} "
                     f"| {m.get('note', '')} |")
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


# The paper's figures (Llama-3-8B on GPUs; SPEC 8, 10): reward variance raw -> aggregated (read
# off a bar chart) and main rates in %.
PAPER_REWARD_VARIANCE = {"bargaining": (0.195, 0.11), "negotiation": (0.20, 0.015),
                         "twenty_questions": (0.088, 0.075), "guess_my_city": (0.042, 0.040)}
PAPER_RATES = {  # game -> policy -> rate (%); "best baseline" is the paper's strongest other method
    "bargaining": {"base": 29.3, "aria-offline": 53.2, "best baseline": 50.1, "raw": 36.5},
    "negotiation": {"base": 38.3, "aria-offline": 45.8, "best baseline": 42.4, "raw": 32.5},
    "twenty_questions": {"base": 27.5, "aria-offline": 34.5},
    "guess_my_city": {"base": 13.5, "aria-offline": 36.0},
}
CLAIMS = [  # (claim, policy a, policy b): a should beat b
    ("aria beats raw-reward REINFORCE", "aria-offline", "raw"),
    ("aria beats behaviour cloning", "aria-offline", "bc"),
    ("aria beats the base model", "aria-offline", "base"),
    ("online RL improves on offline aria", "aria-online", "aria-offline"),
]


INSUFFICIENT = "insufficient data"


def comparison_verdict(c: dict) -> str:
    """Reproduced (a significantly better), not reproduced (significantly worse), or
    inconclusive, with the difference this design could have detected."""
    if c["mcnemar_p"] < 0.05:
        return "reproduced" if c["difference"] > 0 else "not reproduced (reversed)"
    return (f"inconclusive at this scale (detectable: {100 * c['paired_detectable_difference']:.0f} pp "
            f"paired, {100 * c['detectable_difference']:.0f} pp unpaired)")


def interval_verdict(part: dict | None) -> str:
    """For a ratio that should be below 1: its whole 95 % interval below 1 reproduces it. An
    interval of zero width is a degenerate sample (one rewarded record spread over its key),
    never evidence."""
    if not part or part.get("ratio") is None:
        return "no reward signal"
    low, high = part["interval"]
    if high - low <= 1e-9 * max(1.0, abs(part["ratio"])):
        return f"{INSUFFICIENT} (zero-width interval: a degenerate sample)"
    if high < 1:
        return "reproduced"
    return "not reproduced" if low > 1 else "inconclusive (interval contains 1)"


def gradient_support(m: dict) -> str:
    """The counts a gradient-variance verdict stands on."""
    return (f"{m.get('records_with_nonzero_weight', '?')} rewarded of {m['records']} records, "
            f"{m.get('episodes_with_nonzero_weight', '?')} of {m['episodes']} episodes")


def gradient_verdict(m: dict, part: dict | None, support: SupportConfig) -> str:
    """interval_verdict, once the sample has the support to carry one: enough records with a
    non-zero weight, from enough episodes, and an interval every resample contributed to."""
    if not part or part.get("ratio") is None:
        return interval_verdict(part)
    rewarded = m.get("records_with_nonzero_weight", 0)
    episodes = m.get("episodes_with_nonzero_weight", 0)
    if rewarded < support.gradient_records or episodes < support.gradient_episodes:
        return (f"{INSUFFICIENT} ({rewarded} rewarded records from {episodes} episodes; a verdict "
                f"needs {support.gradient_records} from {support.gradient_episodes})")
    share = part.get("share_without_ratio",
                     part.get("resamples_without_ratio", 0) / max(1, m.get("bootstrap_resamples", 1)))
    if share > support.max_share_without_ratio:
        return (f"{INSUFFICIENT} (unreliable interval: {100 * share:.1f} % of resamples had no "
                f"ratio; at most {100 * support.max_share_without_ratio:.0f} % allowed)")
    return interval_verdict(part)


def rm_verdict(held_out: dict, support: SupportConfig) -> str:
    """Does the reward model beat predicting each game's training mean? The paired difference in
    squared error over held-out records, with its episode-bootstrap interval, decides."""
    paired = held_out.get("paired_squared_error")
    if paired is None:
        return f"{INSUFFICIENT} (no paired comparison in the metrics)"
    if paired["episodes"] < support.rm_held_out_episodes:
        return (f"{INSUFFICIENT} ({paired['episodes']} held-out episodes; a verdict needs "
                f"{support.rm_held_out_episodes})")
    if paired["high"] < 0:
        return "beats the per-game mean"
    if paired["low"] > 0:
        return "worse than the per-game mean"
    return "inconclusive (interval contains 0)"


def online_is_smoke_run(online: dict, support: SupportConfig) -> bool:
    return (online.get("episodes") or 0) < support.online_episodes


def find_comparison(evals_game: dict, a: str, b: str) -> dict | None:
    return next((c for c in evals_game.get("comparisons", []) if (c["a"], c["b"]) == (a, b)), None)


def reward_variance_row(game: str, m: dict) -> str:
    """Aggregation's drop of the reward variance: it holds by construction (the variance of a
    conditional mean is at most the variance), so its size is reported, not a verdict."""
    paper = PAPER_REWARD_VARIANCE.get(game)
    players = m["players"].values()
    ours = ", ".join(f"{role} {v['raw_variance']:.3f} -> {v['aggregated_variance']:.3f}"
                     for role, v in m["players"].items())
    if any(v["variance_ratio"] is None for v in players):
        verdict = "no reward signal"
    else:
        drops = ", ".join(f"{100 * (1 - v['variance_ratio']):.0f} %" for v in players)
        verdict = f"holds by construction (a conditional mean); drop {drops}"
    instances = sum(v.get("action_instances", 0) for v in players)
    return (f"| aggregation lowers reward variance | {game} | "
            f"{f'{paper[0]} -> {paper[1]}' if paper else '—'} | {ours} "
            f"| {instances or '—'} instances | — | {verdict} |")


def gradient_variance_row(game: str, m: dict, support: SupportConfig) -> str:
    part = m.get("no_baseline")
    ours = "n/a" if not part or part["ratio"] is None else \
        f"ratio {part['ratio']:.2f} [{part['interval'][0]:.2f}, {part['interval'][1]:.2f}]"
    return (f"| aggregation lowers policy-gradient variance | {game} | lower (no figure) | {ours} "
            f"| {gradient_support(m)} | — | {gradient_verdict(m, part, support)} |")


def comparison_row(claim: str, game: str, c: dict, a: str, b: str) -> str:
    paper = PAPER_RATES.get(game, {})
    paper_b = paper.get(b, paper.get("best baseline") if b == "bc" else None)
    paper_cell = f"{paper[a]} vs {paper_b}" if a in paper and paper_b is not None else "—"
    reward = c["mean_reward"]
    ours = (f"{100 * c['rate_a']:.1f} vs {100 * c['rate_b']:.1f} (p = {c['mcnemar_p']:.3g}); "
            f"mean reward {reward['difference']:+.3f} [{reward['low']:+.3f}, {reward['high']:+.3f}]")
    detectable = f"{100 * c['paired_detectable_difference']:.0f} pp"
    if reward.get("detectable_difference") is not None:
        detectable += f"; reward {reward['detectable_difference']:.3f}"
    return (f"| {claim} | {game} | {paper_cell} | {ours} | {c['pairs']} pairs | {detectable} "
            f"| {comparison_verdict(c)} |")


def verdict_table(inputs: dict, support: SupportConfig) -> str:
    """One row per claim and game: the paper's figure, ours with its interval, the data it
    stands on, the smallest difference the design detects, and the verdict."""
    lines = ["| claim | game | paper | ours [95 % interval] | n (support) | detectable "
             "| verdict |", "|---" * 7 + "|"]
    for claim, a, b in CLAIMS:
        for game, m in inputs["eval"].items():
            c = find_comparison(m, a, b)
            if c is not None:
                lines.append(comparison_row(claim, game, c, a, b))
    for game, m in inputs["grad_variance"].items():
        lines.append(gradient_variance_row(game, m, support))
    for game, m in inputs["build"].items():
        lines.append(reward_variance_row(game, m))
    return "\n".join(lines)


def verdict_counts(table: str) -> dict[str, int]:
    """How many rows of the verdict table end in each kind of verdict."""
    kinds = {"reproduced": 0, "not reproduced": 0, "inconclusive": 0, INSUFFICIENT: 0,
             "by construction": 0, "no reward signal": 0}
    for line in table.splitlines()[2:]:
        verdict = line.rstrip(" |").rsplit("| ", 1)[-1]
        for kind in kinds:
            if verdict.startswith(kind) or (kind == "by construction" and kind in verdict):
                kinds[kind] += 1
                break
    return kinds


def scale_paragraph(inputs: dict, table: str) -> str:
    """Plainly, what this run can and cannot decide, from its own counts."""
    counts = verdict_counts(table)
    primary = [c for m in inputs["eval"].values() for c in m.get("comparisons", [])
               if (c["a"], c["b"]) == (CLAIMS[0][1], CLAIMS[0][2])]
    sizes = sorted({c["pairs"] for c in primary})
    detect = [100 * c["paired_detectable_difference"] for c in primary]
    parts = [f"Of {sum(counts.values())} rows: {counts['reproduced']} reproduced, "
             f"{counts['not reproduced']} not reproduced, {counts['inconclusive']} inconclusive, "
             f"{counts[INSUFFICIENT]} with insufficient data, {counts['by construction']} true by "
             f"construction and {counts['no reward signal']} without reward signal."]
    paper_gaps = ", ".join(f"{r['aria-offline'] - r['raw']:.0f} pp in {g}"
                           for g, r in PAPER_RATES.items() if "raw" in r)
    if primary:
        parts.append(
            f"The primary comparison (aria vs raw) has {'/'.join(map(str, sizes))} paired episodes "
            f"per game and detects win-rate differences of {min(detect):.0f}-{max(detect):.0f} pp "
            f"at 80 % power: effects the size of the paper's ({paper_gaps}) are within reach "
            "where the detectable difference is below them, and smaller effects are not. The "
            "secondary comparisons have fewer episodes and say so.")
    parts.append("What this scale cannot decide: anything about Llama-3-8B-sized policies or the "
                 "paper's 20-round games (SmolLM2-135M on 3-round games and 6-question games "
                 "with a few listed candidates is a different regime), effects below the detectable "
                 "differences above, and online RL from a smoke-sized run.")
    return " ".join(parts)


def comparisons_table(evals: dict[str, dict]) -> str:
    """Every paired comparison: main rates, difference, McNemar p, the detectable difference,
    and the paired bootstrap of the mean reward."""
    lines = ["| game | a vs b | pairs | rate a | rate b | difference (pp) | only a / only b "
             "| McNemar p | detectable (pp): paired / unpaired / worst case "
             "| mean reward difference [95 %] | bootstrap p |", "|---" * 11 + "|"]
    for game, m in evals.items():
        for c in m.get("comparisons", []):
            r = c["mean_reward"]
            lines.append(
                f"| {game} | {c['a']} vs {c['b']} | {c['pairs']} | {100 * c['rate_a']:.1f} "
                f"| {100 * c['rate_b']:.1f} | {100 * c['difference']:+.1f} | {c['only_a']} / {c['only_b']} "
                f"| {c['mcnemar_p']:.3g} | {100 * c['paired_detectable_difference']:.0f} / "
                f"{100 * c['detectable_difference']:.0f} / {100 * c['detectable_difference_worst_case']:.0f} "
                f"| {r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['p_value']:.3g} |")
    return "\n".join(lines)


def training_section(training: dict[str, dict], support: SupportConfig) -> str:
    """Offline training per variant with its validation curve, the reward model against the
    per-game-mean baseline, and online training."""
    parts = []
    rows = ["| variant | records | steps | baseline | final loss | validation mean reward by step |",
            "|---" * 6 + "|"]
    for variant in ("aria", "raw", "bc"):
        m = training.get(variant)
        if m is None:
            continue
        curve = ", ".join(f"{p['step']}: {p['mean_reward']:.3f}" for p in m.get("validation", []))
        rows.append(f"| {variant} | {m.get('records', 0)} | {m.get('steps', 0)} "
                    f"| {m.get('baseline', 'n/a')} | {m.get('final_loss', 'n/a')} "
                    f"| {curve or m.get('reason', 'n/a')} |")
    parts.append("Offline REINFORCE, one policy per variant over all games. The validation curve "
                 "is the mean own reward over validation episodes (seeds from 2 000 000, never "
                 "evaluation's), played at the start, every few steps and at the end "
                 "(`dvc plots show plots/learning_curves`).\n\n" + "\n".join(rows))
    rm = training.get("rm")
    if rm and "held_out" in rm:
        h = rm["held_out"]
        base = h.get("game_mean_baseline", {})
        paired = h.get("paired_squared_error")
        diff = ("" if paired is None else
                f" Paired difference in squared error (model - mean) {paired['difference']:+.5f}, "
                f"95 % episode-bootstrap interval [{paired['low']:+.5f}, {paired['high']:+.5f}] "
                f"over {paired['episodes']} held-out episodes.")
        parts.append(
            "Reward model on held-out episodes ({} records): MSE {:.4f} vs {:.4f} for predicting "
            "each game's training mean; Spearman {} vs {}.{} Verdict: {}.".format(
                h.get("records", "?"), h.get("mse", float("nan")), base.get("mse", float("nan")),
                h.get("spearman"), base.get("spearman"), diff, rm_verdict(h, support)))
    online = training.get("online")
    if online:
        label = (f"**Smoke run** (fewer than {support.online_episodes} self-play episodes: it "
                 "shows the loop runs, not what online RL does). " if
                 online_is_smoke_run(online, support) else "")
        parts.append(f"Online training: {label}{online.get('iterations')} iterations, "
                     f"{online.get('episodes')} self-play episodes; last iteration: "
                     f"{online.get('final')}.")
    return "\n\n".join(parts)


def render(inputs: dict[str, dict[str, dict]], support: SupportConfig,
           training: dict[str, dict] | None = None) -> str:
    evals = inputs["eval"]
    verdicts = verdict_table(inputs, support)
    sections = [
        "# ARIA results",
        "## Verdict per claim\n\nReproduced: significant in the claimed direction (McNemar "
        "exact test on paired episodes, p < 0.05; for variance ratios, the whole 95 % bootstrap "
        "interval below 1). Inconclusive: neither, with the smallest difference this design "
        "detects at 80 % power (on the win or success rate, and on the mean reward). "
        f"Insufficient data: fewer than {support.gradient_records} rewarded records from "
        f"{support.gradient_episodes} episodes behind a gradient-variance ratio, a zero-width "
        f"interval, or more than {100 * support.max_share_without_ratio:.0f} % of resamples "
        "without a ratio (report.support in params.yaml). The paper used Llama-3-8B on GPUs; "
        "this run uses SmolLM2-135M on a 2-core CPU with shorter, easier games (params.yaml), so "
        "its figures are context, not targets.\n\n" + verdicts,
        "## What this scale can and cannot decide\n\n" + scale_paragraph(inputs, verdicts),
        "## Evaluation\n\nMain rate per game (%) with 95 % Wilson intervals. Two-player games: "
        "the policy plays both seats against the base model; single-agent games: fixed targets."
        "\n\n" + evaluation_table(evals) + "\n\n![rates](rates.png)",
        "### Per game\n\n" + "\n\n".join(detail_table(g, m) for g, m in evals.items()),
        "## Paired comparisons\n\nSame evaluation seeds and seats for both policies, and the same "
        "sampling seeds per move. Detectable: the smallest difference found at alpha 0.05 with "
        "80 % power, from the observed discordance (paired), at the pooled rate (unpaired), and "
        "at a rate of 50 % (worst case).\n\n" + comparisons_table(evals),
        "## Training\n\n" + training_section(training or {}, support),
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
    write_text(out_dir / "results.md", render(inputs, cfg.support, load_training(metrics_dir)))
