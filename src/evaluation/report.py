"""The report stage: every metric the paper's claims rest on, across training seeds, in one
markdown file and one chart.

Every variant is trained once per seed (train.seeds), each seed on its own rollout data, and
every seed's policies play the same evaluation episodes. A claim is therefore judged on one
score per seed, paired by seed (stats.verdict, docs/method.md §13), with the paired episodes of
all seeds pooled beside it. Inputs are the metrics files of earlier stages (never the data), so
the report is cheap to rebuild. A missing input stops the stage with one message listing every
missing file and the stage that writes it, rather than a half-empty report that looks complete.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from src.evaluation import stats
from src.game_names import GAME_NAMES
from src.io_utils import InputError, atomic_path, read_json, write_text
from src.training.records import VARIANTS

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


# -- inputs ---------------------------------------------------------------------------------
SEEDED = {  # metrics/<folder>/s<seed>/<game>.json -> its stage (<stage>@<seed>)
    "eval": "evaluate", "build": "build", "select_k": "select-k", "rollout": "rollout",
}
SEED_FOLDER = re.compile(r"s(\d+)")

OPTIONAL = {  # whole-run metrics the report shows when present -> file under metrics/
    "rm": "train_rm.json", "online": "train_online.json", "model": "prepare_model.json",
    "corpus": "corpus.json",
}


@dataclass
class Run:
    """The metrics every report needs: per game, one file per seed in seed order."""
    seeds: list[int]
    eval: dict[str, list[dict]]
    build: dict[str, list[dict]]
    select_k: dict[str, list[dict]]
    rollout: dict[str, list[dict]]
    grad_variance: dict[str, dict]  # first seed only: one file per game
    iterations: dict[int, dict[str, list[dict]]] = field(default_factory=dict)  # ARIA iteration >= 2 -> its evaluation, per game and seed


def discover_seeds(metrics_dir: Path) -> list[int]:
    """The training seeds, from the evaluation's seed folders, in numeric order (s10 after s9)."""
    folder = metrics_dir / "eval"
    entries = folder.iterdir() if folder.is_dir() else []
    return sorted(int(m.group(1)) for p in entries
                  if p.is_dir() and (m := SEED_FOLDER.fullmatch(p.name)))


def load_run(metrics_dir: Path | str, games: list[str]) -> Run:
    """Every (seed, game) file of every seeded folder and each game's gradient variance; all
    missing files named in one InputError."""
    metrics_dir = Path(metrics_dir)
    seeds = discover_seeds(metrics_dir)
    if not seeds:
        raise InputError(f"report: no seed folders {metrics_dir / 'eval'}/s<seed>/: "
                         "run the evaluate stages")
    paths = {(folder, g, s): metrics_dir / folder / f"s{s}" / f"{g}.json"
             for folder in SEEDED for g in games for s in seeds}
    grads = {g: metrics_dir / "grad_variance" / f"{g}.json" for g in games}
    missing = [f"{p} (stage {SEEDED[folder]}@{s})" for (folder, g, s), p in paths.items()
               if not p.exists()]
    missing += [f"{p} (stage grad-variance@{g})" for g, p in grads.items() if not p.exists()]
    if missing:
        raise InputError("report: missing inputs, run the stages that write them: "
                         + "; ".join(missing))
    seeded = {folder: {g: [read_json(paths[folder, g, s]) for s in seeds] for g in games}
              for folder in SEEDED}
    return Run(seeds, **seeded, grad_variance={g: read_json(p) for g, p in grads.items()},
               iterations=load_iterations(metrics_dir, games, seeds))


def load_training(metrics_dir: Path | str, seeds: list[int]) -> dict:
    """The training metrics that exist, offline runs per variant (the seeds present), and the
    offline files not found: a report of a partial run says what is missing."""
    metrics_dir = Path(metrics_dir)
    found = {name: read_json(metrics_dir / rel) for name, rel in OPTIONAL.items()
             if (metrics_dir / rel).exists()}
    folders = [metrics_dir / "train_offline" / f"s{s}" for s in seeds]
    on_disk = {p.stem for folder in folders for p in folder.glob("*.json")}
    offline, absent = {}, []
    for variant in [*VARIANTS, *sorted(on_disk - set(VARIANTS))]:
        paths = [folder / f"{variant}.json" for folder in folders]
        offline[variant] = [read_json(p) for p in paths if p.exists()]
        absent += [str(p) for p in paths if not p.exists()]
    return {**found, "offline": offline, "offline_missing": absent}


# -- formatting -----------------------------------------------------------------------------
def row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*columns: str) -> str:
    return row(list(columns)) + "\n" + "|---" * len(columns) + "|"


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def spread(values: list, fmt: str = "{:.3f}") -> str:
    """Mean over seeds, with the min to max when seeds differ, so one odd seed shows."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    text = fmt.format(mean(values))
    if max(values) - min(values) > 1e-12:
        text += f" ({fmt.format(min(values))} to {fmt.format(max(values))})"
    return text


def number(value) -> str:
    """A float to four significant digits; anything else as it is."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def per_seed(values: list[float], fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def policy_names(evals: dict[str, list[dict]]) -> list[str]:
    """Policies in the evaluation's order (params order), first-seen across games and seeds."""
    return list(dict.fromkeys(p for files in evals.values() for m in files
                              for p in m["policy_order"]))


def main_rates(evals: list[dict], policy: str) -> list[float] | None:
    """One main-rate score (%) per seed; None when some seed did not evaluate the policy."""
    rates = [m["policies"].get(policy, {}).get(m["primary"], {}).get("rate") for m in evals]
    return None if any(r is None for r in rates) else [100 * r for r in rates]


def primary(evals: list[dict]) -> str:
    return evals[0]["primary"].replace("_", " ")


# -- 1-2. verdicts --------------------------------------------------------------------------
# The paper's main rates in % (Llama-3-8B on GPUs; docs/method.md §10). "best baseline" is its
# strongest other method (step-wise DPO in both games; dpo_step / dpo_trajectory: its DPO rows).
# Guess My City: the paper's Iter 1 figure (its 36.0 is Iter 3).
PAPER_RATES = {
    "bargaining": {"base": 29.3, "raw": 36.5, "best baseline": 50.1, "dpo_step": 50.1,
                   "dpo_trajectory": 46.6, "aria": 53.2},
    "negotiation": {"base": 38.3, "raw": 32.5, "best baseline": 42.4, "dpo_step": 42.4,
                    "dpo_trajectory": 35.5, "aria": 45.8},
    "twenty_questions": {"base": 27.5, "aria": 34.5},
    "guess_my_city": {"base": 13.5, "aria": 29.0},
}
VERDICT_ROWS = [  # (A, B): A should beat B
    ("aria", "raw"), ("aria", "bc"), ("aria", "base"), ("aria", "true_intention"),
    ("true_intention", "raw"), ("aria", "exact"), ("aria", "similarity"),
    ("aria", "dpo_step"), ("aria", "dpo_trajectory"),
]
NO_CLAIM = ("true_intention", "exact", "similarity")  # grouping rules the paper does not test
MARGIN_FRACTION = 0.5  # a gain below half the paper's smallest one is not the paper's effect
VERDICT_COLUMNS = ("game", "claim", "paper (%)", "A (%): mean / IQM (per seed)",
                   "B (%): mean / IQM (per seed)", "A − B (pp) [95 % t interval over seeds]",
                   "P(A > B) [95 %]", "episodes pooled over seeds: only A / only B, McNemar p",
                   "seeds", "margin (pp)", "verdict")


def claimed_gain(game: str) -> float:
    """The paper's smallest gain of ARIA in this game (pp): the effect a reproduction must see,
    the same yardstick for every row of the game."""
    paper = PAPER_RATES[game]
    return round(paper["aria"] - max(v for name, v in paper.items() if name != "aria"), 1)


def paper_cell(game: str, a: str, b: str) -> str:
    if any(name in NO_CLAIM for name in (a, b)):
        return "no claim"
    if a.startswith(ITERATION_PREFIX):
        return iteration_paper_cell(game, a, b)
    paper = PAPER_RATES[game]
    if b in paper:
        return f"{paper[a]} vs {paper[b]}"
    if b == "bc" and "best baseline" in paper:
        return f"{paper[a]} vs {paper['best baseline']} (best baseline)"
    return "—"


def find_comparison(m: dict, a: str, b: str) -> dict | None:
    """One evaluation file's comparison of a and b, oriented so only_a counts a's lone wins."""
    for c in m.get("comparisons", []):
        if (c["a"], c["b"]) == (a, b):
            return c
        if (c["a"], c["b"]) == (b, a):
            return {**c, "only_a": c["only_b"], "only_b": c["only_a"]}
    return None


def pooled_episode_test(evals: list[dict], a: str, b: str) -> str:
    """Pairs where only A or only B succeeded, summed over seeds, with McNemar's exact test on
    the sums; "—" when some seed has no such comparison."""
    found = [find_comparison(m, a, b) for m in evals]
    if not found or any(c is None for c in found):
        return "—"
    only_a, only_b = sum(c["only_a"] for c in found), sum(c["only_b"] for c in found)
    return (f"{only_a} / {only_b}, p = {stats.mcnemar_exact(only_a, only_b):.3g} "
            f"({sum(c['pairs'] for c in found)} pairs)")


def difference_cell(v: dict) -> str:
    """The mean seed-paired difference with the t interval the verdict was decided on."""
    if v["n_seeds"] < 2:
        return f"{v['mean_diff']:+.1f} (one seed: no interval)"
    low, high = v["ci"]
    return f"{v['mean_diff']:+.1f} [{low:+.1f}, {high:+.1f}]"


def verdict_cell(v: dict) -> str:
    text = f"**{v['verdict']}**: {v['reason']}"
    if v["seeds_needed"]:
        text += f"; seeds needed: {v['seeds_needed']}"
    return text


def verdict_row(game: str, evals: list[dict], a: str, b: str) -> tuple[str, dict | None]:
    """One claim on one game and its verdict (None when a policy was not evaluated)."""
    lead = [game, f"{a} beats {b}", paper_cell(game, a, b)]
    scores = {p: main_rates(evals, p) for p in (a, b)}
    absent = [p for p, s in scores.items() if s is None]
    if absent:
        return row(lead + ["—"] * 7 + [f"no verdict: {absent[0]} is not in every seed's "
                                       "evaluation"]), None
    gain = claimed_gain(game)
    v = stats.verdict(scores[a], scores[b], gain, margin_fraction=MARGIN_FRACTION)
    sides = [f"{mean(scores[p]):.1f} / {v[f'iqm_{k}']:.1f} ({per_seed(scores[p])})"
             for p, k in ((a, "a"), (b, "b"))]
    poi, (poi_low, poi_high) = v["prob_improvement"], v["prob_improvement_ci"]
    return row(lead + sides + [
        difference_cell(v), f"{poi:.2f} [{poi_low:.2f}, {poi_high:.2f}]",
        pooled_episode_test(evals, a, b), v["n_seeds"],
        f"{v['margin']:.2f} (½ × {gain})", verdict_cell(v)]), v


def verdict_table(evals: dict[str, list[dict]]) -> tuple[str, list[dict | None]]:
    lines, verdicts = [header(*VERDICT_COLUMNS)], []
    for game, files in evals.items():
        for a, b in VERDICT_ROWS:
            line, v = verdict_row(game, files, a, b)
            lines.append(line)
            verdicts.append(v)
    return "\n".join(lines), verdicts


VERDICT_NOTE = (
    "Scores: the main rate (win rate in the two-player games, success rate in the question "
    "games) in %, one per training seed. The paper makes no claim about true_intention, which "
    "aggregates rewards by each move's recorded intention instead of its cluster: \"aria beats "
    "true_intention\" measures what clustering loses against perfect grouping, and "
    "\"true_intention beats raw\" what perfect grouping can give; nor about exact and "
    "similarity, which group by identical or similar text (GiGPO's keys; "
    "docs/method.md §8.1): \"aria beats exact\" and \"aria beats similarity\" measure what grouping by "
    "intention adds over grouping by text. Margin: half the paper's "
    "smallest gain of ARIA in that game, the same for every row of the game. Rules "
    "(stats.verdict, on A − B per seed): **reproduced** if the 95 % interval of the mean "
    "difference excludes 0 in the claimed direction; **not reproduced** if it lies below the "
    "margin or below 0; **inconclusive** otherwise, with the seeds that would decide at the "
    "observed mean and spread. The interval is over training seeds (each seed draws its own "
    "rollout dataset and trains every variant on it, so the seed is the pair); P(A > B) "
    "compares the seeds' scores unpaired. The episode test pools the paired evaluation episodes "
    "of all seeds; every seed plays the same episodes, so pairs of one episode are correlated "
    "across seeds and its p-value is optimistic: read it as a check on the direction (— where "
    "the pair is not among the evaluation's comparisons).")


def count_line(verdicts: list[dict | None]) -> str:
    counts = {kind: sum(v is not None and v["verdict"] == kind for v in verdicts)
              for kind in ("reproduced", "not reproduced", "inconclusive")}
    line = (f"Of {len(verdicts)} rows: {counts['reproduced']} reproduced, "
            f"{counts['not reproduced']} not reproduced, {counts['inconclusive']} inconclusive")
    unjudged = sum(v is None for v in verdicts)
    return line + (f", {unjudged} without a verdict." if unjudged else ".")


# -- ARIA iterations (docs/method.md §14) -----------------------------------------------------
# The paper's aria main rate (%) after each iteration; negotiation and Twenty Questions report
# Iter 1 only ("—").
PAPER_ITERATIONS = {
    "bargaining": {1: 53.2, 2: 58.9, 3: 58.0},
    "guess_my_city": {1: 29.0, 2: 32.0, 3: 36.0},
}
ITERATION_PREFIX = "aria@"  # aria@<i>: iteration i's aria policy (src/rollout/iterations.py)
ITERATION_FOLDER = re.compile(r"i(\d+)")


def iteration_paper_cell(game: str, a: str, b: str) -> str:
    paper = PAPER_ITERATIONS.get(game, {})
    i, j = (int(name.removeprefix(ITERATION_PREFIX)) for name in (a, b))
    return f"{paper[i]} vs {paper[j]}" if i in paper and j in paper else "—"


def load_iterations(metrics_dir: Path, games: list[str],
                    seeds: list[int]) -> dict[int, dict[str, list[dict]]]:
    """Every later iteration's evaluation (metrics/eval/i<i>/s<seed>/<game>.json), per game in
    seed order; none when the run has no iteration folders. A missing file stops the report."""
    folder = metrics_dir / "eval"
    found = sorted(int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else [])
                   if p.is_dir() and (m := ITERATION_FOLDER.fullmatch(p.name)))
    paths = {(i, g, s): folder / f"i{i}" / f"s{s}" / f"{g}.json"
             for i in found for g in games for s in seeds}
    missing = [f"{p} (stage iterate-evaluate, iteration {i}, seed {s})"
               for (i, g, s), p in paths.items() if not p.exists()]
    if missing:
        raise InputError("report: missing inputs, run the stages that write them: "
                         + "; ".join(missing))
    return {i: {g: [read_json(paths[i, g, s]) for s in seeds] for g in games} for i in found}


def iteration_pairs(first: list[dict], later: list[dict], iteration: int) -> list[dict]:
    """Per seed, one evaluation holding iteration 1's aria and ``iteration``'s, with the paired
    comparison the iteration's evaluation made (the same episodes)."""
    a, b = f"{ITERATION_PREFIX}{iteration}", f"{ITERATION_PREFIX}1"
    return [{"primary": m1["primary"], "policy_order": [b, a],
             "policies": {b: m1["policies"].get("aria", {}), a: mi["policies"].get("aria", {})},
             "comparisons": mi.get("comparisons", [])} for m1, mi in zip(first, later)]


def iteration_table(evals: dict[str, list[dict]],
                    iterations: dict[int, dict[str, list[dict]]]) -> tuple[str, list[dict | None]]:
    """Iter i vs Iter 1 (aria) per game, judged as every verdict row is (stats.verdict over
    seeds, the game's margin)."""
    lines, verdicts = [header(*VERDICT_COLUMNS)], []
    for game, files in evals.items():
        for i, later in iterations.items():
            line, v = verdict_row(game, iteration_pairs(files, later[game], i),
                                  f"{ITERATION_PREFIX}{i}", f"{ITERATION_PREFIX}1")
            lines.append(line)
            verdicts.append(v)
    return "\n".join(lines), verdicts


ITERATION_NOTE = (
    "aria@i: the aria policy after ARIA iteration i (iteration i plays iteration i−1's policy "
    "on fresh game seeds, re-clusters, rebuilds the records and continues training it); "
    "aria@1 is the aria of the table above. Every iteration plays the same evaluation episodes, "
    "so the rows pair iterations by training seed and episode. Paper: bargaining 53.2 → 58.9 → "
    "58.0, Guess My City 29.0 → 32.0 → 36.0 (Iter 1 → 2 → 3); the other games' iteration "
    "figures are not reported (—). Margin and rules as above.")


def iteration_section(run: Run) -> list[str]:
    """The report's iteration section; nothing when the run has no later iterations."""
    if not run.iterations:
        return []
    table, verdicts = iteration_table(run.eval, run.iterations)
    return ["## ARIA iterations\n\n" + table + "\n\n" + ITERATION_NOTE, count_line(verdicts)]


# -- 3. every policy on every game ----------------------------------------------------------
@dataclass
class Summary:
    """One policy's main rate on one game across seeds (%)."""
    scores: list[float]
    mean: float
    low: float
    high: float
    iqm: float


def summarise(game: str, scores: list[float]) -> Summary:
    estimate, low, high = stats.stratified_bootstrap_ci({game: scores},
                                                        lambda d: d[game].mean(-1))
    return Summary(scores, estimate, low, high, float(stats.iqm(scores)))


def policy_summaries(evals: dict[str, list[dict]]) -> dict[str, dict[str, Summary]]:
    names = policy_names(evals)
    return {game: {p: summarise(game, s) for p in names
                   if (s := main_rates(files, p)) is not None}
            for game, files in evals.items()}


def policy_table(summaries: dict[str, dict[str, Summary]], evals: dict[str, list[dict]],
                 seeds: list[int]) -> str:
    lines = [header("game (main rate)", "policy", "mean [95 % over seeds]", "IQM",
                    *(f"s{s}" for s in seeds))]
    for game, by_policy in summaries.items():
        for name, s in by_policy.items():
            lines.append(row([f"{game} ({primary(evals[game])})", name,
                              f"{s.mean:.1f} [{s.low:.1f}, {s.high:.1f}]", f"{s.iqm:.1f}",
                              *(f"{x:.1f}" for x in s.scores)]))
    return "\n".join(lines)


def rates_chart(summaries: dict[str, dict[str, Summary]], evals: dict[str, list[dict]],
                path: Path | str, dpi: int) -> None:
    """Grouped bars per game: mean main rate over seeds, the across-seed interval as error
    bars, each seed's value as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games, names = list(summaries), policy_names(evals)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(games)), 4.0))
    for j, name in enumerate(names):
        placed = [(i - 0.4 + width * (j + 0.5), summaries[g][name])
                  for i, g in enumerate(games) if name in summaries[g]]
        xs = [x for x, _ in placed]
        ax.bar(xs, [s.mean for _, s in placed], width, color=f"C{j}", ecolor="black",
               capsize=3, label=name, yerr=[[s.mean - s.low for _, s in placed],
                                            [s.high - s.mean for _, s in placed]])
        # the seeds in the bar's colour: a 0 % bar is still told apart by its dots
        ax.scatter([x for x, s in placed for _ in s.scores],
                   [v for _, s in placed for v in s.scores], s=10, color=f"C{j}",
                   edgecolors="black", linewidths=0.5, zorder=3)
    top = max(max(s.high, *s.scores) for by_policy in summaries.values()
              for s in by_policy.values())
    ax.set_xticks(range(len(games)), [f"{g}\n({primary(evals[g])})" for g in games])
    ax.set_ylabel("main rate (%)")
    ax.set_title("mean over seeds, 95 % interval over seeds, dots: one per seed",
                 fontsize="small")
    ax.set_ylim(0, min(100.0, 1.15 * top + 2))
    ax.legend(fontsize="small", ncols=min(len(names), 5), loc="upper center",
              bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


# -- 4. gradient variance -------------------------------------------------------------------
INSUFFICIENT = "insufficient data"


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


def ratio_cell(part: dict | None) -> str:
    if not part or part.get("ratio") is None:
        return "n/a"
    low, high = part["interval"]
    return f"{part['ratio']:.3f} [{low:.3f}, {high:.3f}]"


def gradient_variance_table(grads: dict[str, dict], support: SupportConfig) -> str:
    """Aggregated/raw ratio of the minibatch policy-gradient variance at the start state, on the
    trainer's estimator and on the paper's, each with its verdict (docs/method.md §13)."""
    lines = [header("game", "records (episodes)", "rewarded records (episodes)",
                    "trainer's estimator (constant baseline): ratio [95 %]", "verdict",
                    "paper's estimator (no baseline): ratio [95 %]", "verdict", "note")]
    for game, m in grads.items():
        lines.append(row([
            game, f"{m['records']} ({m['episodes']})",
            f"{m.get('records_with_nonzero_weight', '?')} "
            f"({m.get('episodes_with_nonzero_weight', '?')})",
            ratio_cell(m.get("constant_baseline")),
            gradient_verdict(m, m.get("constant_baseline"), support),
            ratio_cell(m.get("no_baseline")), gradient_verdict(m, m.get("no_baseline"), support),
            m.get("note", "")]))
    return "\n".join(lines)


# -- 5. grouping diagnostics ----------------------------------------------------------------
GROUPING_COLUMNS = ("game", "role", "adjusted Rand index",
                    "singleton share: clusters / true intentions", "keys: clusters / true",
                    "within / between-key variance: clusters", "… : true intentions",
                    "invalid or truncated moves", "their weight share",
                    "largest aggregation bias (intention: mean A_cluster − A_true)")


def largest_bias(groupings: list[dict]) -> str:
    """The intention whose advantage clustering shifts most (mean over seeds): where grouping
    by cluster misleads the trainer."""
    by_intention: dict[str, list[float]] = {}
    for g in groupings:
        for name, bias in (g.get("aggregation_bias_by_intention") or {}).items():
            if bias is not None:
                by_intention.setdefault(name, []).append(bias)
    if not by_intention:
        return "n/a"
    name = max(by_intention, key=lambda n: abs(mean(by_intention[n])))
    return f"{name}: {spread(by_intention[name], '{:+.3f}')}"


def _dig(d: dict, keys: tuple[str, ...]):
    for key in keys:
        d = (d or {}).get(key)
    return d


def over_seeds(groupings: list[dict], *keys: str, fmt: str = "{:.3f}") -> str:
    """One grouping figure, mean over seeds (min to max)."""
    return spread([_dig(g, keys) for g in groupings], fmt)


def both(groupings: list[dict], key: str, fmt: str = "{:.3f}") -> str:
    """A figure for the clusters beside the same figure for the true intentions."""
    return (f"{over_seeds(groupings, 'clusters', key, fmt=fmt)} / "
            f"{over_seeds(groupings, 'true_intentions', key, fmt=fmt)}")


def variances(groupings: list[dict], kind: str) -> str:
    """Reward variance within keys vs between them: grouping that fits the intentions leaves
    little within."""
    return (f"{over_seeds(groupings, kind, 'within_key_variance', fmt='{:.4f}')} / "
            f"{over_seeds(groupings, kind, 'between_key_variance', fmt='{:.4f}')}")


def grouping_rows(game: str, builds: list[dict]) -> list[str]:
    """One row per role, averaged over the seeds that recorded intentions."""
    present = [b["grouping"] for b in builds if b.get("grouping")]
    if not present:
        return [row([game, "—", "no recorded intentions: grouping not diagnosed"]
                    + ["—"] * (len(GROUPING_COLUMNS) - 3))]
    lines = []
    for role in dict.fromkeys(r for g in present for r in g):
        seeds = [g[role] for g in present if role in g]
        label = (role if len(seeds) == len(builds)
                 else f"{role} ({len(seeds)} of {len(builds)} seeds)")
        lines.append(row([
            game, label, over_seeds(seeds, "adjusted_rand_index"),
            both(seeds, "singleton_share"), both(seeds, "keys", "{:.1f}"),
            variances(seeds, "clusters"), variances(seeds, "true_intentions"),
            over_seeds(seeds, "invalid_or_truncated_share"),
            over_seeds(seeds, "weight_share_invalid_or_truncated"), largest_bias(seeds)]))
    return lines


def grouping_table(builds: dict[str, list[dict]]) -> str:
    rows = [line for game, files in builds.items() for line in grouping_rows(game, files)]
    return "\n".join([header(*GROUPING_COLUMNS), *rows])


RULE_ORDER = ("intention", "exact", "similarity", "true_intention", "none")  # build.grouping's


def grouping_rules_table(builds: dict[str, list[dict]]) -> str:
    """Per game and role, each grouping rule's singleton share and key count, mean over the
    seeds whose build ran it (min to max); "n/a" where no seed did."""
    found = {rule for files in builds.values() for m in files
             for rule in (m.get("grouping_rules") or {})}
    rules = sorted(found, key=lambda r: (RULE_ORDER.index(r) if r in RULE_ORDER
                                         else len(RULE_ORDER), r))
    if not rules:
        return "No build metrics with grouping rules (build.grouping)."
    lines = [header("game", "role", *(f"{rule}: singleton share / keys" for rule in rules))]
    for game, files in builds.items():
        per_rule = [m.get("grouping_rules") or {} for m in files]
        roles = dict.fromkeys(role for m in per_rule for by_role in m.values()
                              for role in (by_role or {}))
        for role in roles:
            cells = []
            for rule in rules:
                seeds = [(m.get(rule) or {}).get(role) for m in per_rule]
                cells.append(f"{over_seeds(seeds, 'singleton_share')} / "
                             f"{over_seeds(seeds, 'keys', fmt='{:.1f}')}")
            lines.append(row([game, role, *cells]))
    return "\n".join(lines)


# -- 6. reward variance and chosen k --------------------------------------------------------
# The paper's reward variance raw -> aggregated, read off a bar chart (docs/method.md §8).
PAPER_REWARD_VARIANCE = {"bargaining": (0.195, 0.11), "negotiation": (0.20, 0.015),
                         "twenty_questions": (0.088, 0.075), "guess_my_city": (0.042, 0.040)}


def reward_variance_table(builds: dict[str, list[dict]]) -> str:
    """Raw vs aggregated reward variance over action instances, per game and role, mean over
    seeds; the drop holds by construction (the variance of a conditional mean is at most the
    variance), so its size is reported, not a verdict."""
    lines = [header("game", "role", "raw variance", "aggregated variance",
                    "ratio", "keys", "paper raw → aggregated")]
    for game, files in builds.items():
        paper = PAPER_REWARD_VARIANCE.get(game)
        for role in dict.fromkeys(r for m in files for r in m["players"]):
            players = [m["players"][role] for m in files if role in m["players"]]
            ratios = [p["variance_ratio"] for p in players]
            lines.append(row([
                game, role, spread([p["raw_variance"] for p in players], "{:.4f}"),
                spread([p["aggregated_variance"] for p in players], "{:.4f}"),
                "no reward signal" if all(r is None for r in ratios) else spread(ratios),
                spread([p["keys"] for p in players], "{:.1f}"),
                f"{paper[0]} → {paper[1]}" if paper else "—"]))
    return "\n".join(lines)


def chosen_k_table(select: dict[str, list[dict]], seeds: list[int]) -> str:
    """The k each role was cut at in each seed, and how it was chosen."""
    lines = [header("game", "role", "method", *(f"s{s}" for s in seeds))]
    for game, files in select.items():
        methods = ", ".join(dict.fromkeys(m["method"] for m in files))
        for role in dict.fromkeys(r for m in files for r in m["k"]):
            lines.append(row([game, role, methods, *(m["k"].get(role, "—") for m in files)]))
    return "\n".join(lines)


# -- 7. base policy and training ------------------------------------------------------------
CLEAN_BASE_VALID = 0.95  # a clean base: at least this share of its rollout moves are valid


def base_table(rollouts: dict[str, list[dict]]) -> str:
    """The base model's invalid moves in the rollouts it wrote for training: a base that cannot
    play leaves aggregation little to work on."""
    lines = [header("game", "invalid-move rate (mean over seeds)", "valid moves",
                    f"clean base (valid ≥ {100 * CLEAN_BASE_VALID:.0f} %)")]
    for game, files in rollouts.items():
        rates = [m.get("invalid_move_rate") for m in files]
        known = [r for r in rates if r is not None]
        valid = 1 - mean(known) if known else None
        lines.append(row([game, spread(rates), "n/a" if valid is None else f"{100 * valid:.1f} %",
                          "n/a" if valid is None else
                          ("yes" if valid >= CLEAN_BASE_VALID else "no")]))
    return "\n".join(lines)


def pretraining_section(model: dict | None, corpus: dict | None) -> str:
    """What the base model was pretrained on, when prepare-model pretrained it."""
    parts = []
    pretraining = (model or {}).get("pretraining")
    if pretraining:
        parts.append("Pretraining: " + ", ".join(
            f"{key.replace('_', ' ')} {number(value)}" for key, value in pretraining.items()
            if not isinstance(value, (dict, list))) + ".")
    if corpus:
        lines = [header("game", "corpus rows", "distinct replies", "intentions (count)")]
        for game, c in corpus.get("games", {}).items():
            intentions = ", ".join(f"{n} {k}" for n, k in c.get("intentions", {}).items())
            lines.append(row([game, c.get("rows"), c.get("distinct_replies"), intentions or "—"]))
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "No pretraining in this run (metrics/prepare_model.json)."


def offline_table(offline: dict[str, list[dict]], missing: list[str]) -> str:
    """Offline REINFORCE per variant, mean over its seeds: data, steps, final loss and the
    validation mean reward from the first point to the last."""
    lines = [header("variant", "seeds", "records", "steps", "final loss",
                    "validation mean reward: first → last point")]
    for variant, runs in offline.items():
        if not runs:
            continue
        curves = [r.get("validation") or [] for r in runs]
        first = [c[0]["mean_reward"] for c in curves if c]
        last = [c[-1]["mean_reward"] for c in curves if c]
        lines.append(row([variant, len(runs), spread([r.get("records") for r in runs], "{:.0f}"),
                          spread([r.get("steps") for r in runs], "{:.0f}"),
                          spread([r.get("final_loss") for r in runs]),
                          f"{spread(first)} → {spread(last)}" if first else "n/a"]))
    text = "\n".join(lines)
    if missing:
        text += "\n\nNot found: " + ", ".join(missing) + "."
    return text


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


def rm_paragraph(rm: dict, support: SupportConfig) -> str:
    h = rm["held_out"]
    base = h.get("game_mean_baseline", {})
    paired = h.get("paired_squared_error")
    diff = ("" if paired is None else
            f" Paired difference in squared error (model - mean) {paired['difference']:+.5f}, "
            f"95 % episode-bootstrap interval [{paired['low']:+.5f}, {paired['high']:+.5f}] "
            f"over {paired['episodes']} held-out episodes.")
    return (f"Reward model on held-out episodes ({h.get('records', '?')} records): MSE "
            f"{number(h.get('mse'))} vs {number(base.get('mse'))} for predicting each game's "
            f"training mean; Spearman {number(h.get('spearman'))} vs "
            f"{number(base.get('spearman'))}.{diff} Verdict: {rm_verdict(h, support)}.")


def online_paragraph(online: dict, support: SupportConfig) -> str:
    label = (f"**Smoke run** (fewer than {support.online_episodes} self-play episodes: it shows "
             "the loop runs, not what online RL does). " if online_is_smoke_run(online, support)
             else "")
    final = ", ".join(f"{key} {number(value)}"
                      for key, value in (online.get("final") or {}).items())
    return (f"Online training: {label}{online.get('iterations')} iterations, "
            f"{online.get('episodes')} self-play episodes; last iteration: {final or 'n/a'}.")


def training_section(training: dict, support: SupportConfig) -> str:
    parts = ["### Pretraining\n\n" + pretraining_section(training.get("model"),
                                                         training.get("corpus")),
             "### Offline training\n\nOne policy per variant and seed over all games. The "
             "validation curve is the mean own reward over validation episodes (seeds from "
             "2 000 000, never evaluation's).\n\n"
             + offline_table(training.get("offline", {}), training.get("offline_missing", []))]
    if training.get("rm", {}).get("held_out"):
        parts.append("### Reward model\n\n" + rm_paragraph(training["rm"], support))
    if training.get("online"):
        parts.append("### Online training\n\n" + online_paragraph(training["online"], support))
    return "\n\n".join(parts)


# -- the report -----------------------------------------------------------------------------
def render(run: Run, summaries: dict[str, dict[str, Summary]], training: dict,
           support: SupportConfig) -> str:
    verdicts_text, verdicts = verdict_table(run.eval)
    seeds = ", ".join(map(str, run.seeds))
    sections = [
        "# ARIA results",
        f"{len(run.seeds)} training seeds ({seeds}); every seed's policies play the same "
        "evaluation episodes, and the base model is the same for every seed. The paper used "
        "Llama-3-8B on GPUs with 20-round games; this run's model and games are set in "
        "params.yaml, so the paper's figures are the yardstick for the margin, not targets.",
        "## Verdicts\n\n" + verdicts_text + "\n\n" + VERDICT_NOTE,
        count_line(verdicts),
        *iteration_section(run),
        "## Every policy on every game\n\nMain rate (%): mean over seeds with its 95 % "
        "bootstrap interval over seeds, the interquartile mean, and each seed's value. "
        "Two-player games: the policy plays both seats against the base model; question "
        "games: fixed targets.\n\n" + policy_table(summaries, run.eval, run.seeds)
        + "\n\n![rates](rates.png)",
        "## Gradient variance (aggregated / raw)\n\nFirst seed's rollouts. The trainer's "
        "estimator subtracts a constant baseline; the paper's has none. Verdict: reproduced "
        "when the whole interval is below 1; insufficient data below "
        f"{support.gradient_records} rewarded records from {support.gradient_episodes} "
        "episodes, with a zero-width interval, or with more than "
        f"{100 * support.max_share_without_ratio:.0f} % of resamples without a ratio "
        "(report.support in params.yaml).\n\n" + gradient_variance_table(run.grad_variance,
                                                                          support),
        "## Grouping diagnostics\n\nClusters against the recorded true intentions, per role, "
        "mean over seeds (min to max): how well clustering recovers the intentions, how many keys "
        "hold one move, and how much reward weight goes to invalid or truncated moves.\n\n"
        + grouping_table(run.build),
        "### Grouping rules\n\nEvery rule of build.grouping on the same rollouts "
        "(docs/method.md §8.1), per role, mean over seeds (min to max): the share of moves alone in their group "
        "(there the rule gives the raw reward) and the number of keys.\n\n"
        + grouping_rules_table(run.build),
        "## Reward variance (raw → aggregated)\n\nMean over seeds; lower by construction (the "
        "variance of a conditional mean is at most the variance), so the size is reported, "
        "not a verdict.\n\n" + reward_variance_table(run.build),
        "### Chosen number of intentions k\n\n" + chosen_k_table(run.select_k, run.seeds),
        "## Base policy and training\n\n" + base_table(run.rollout) + "\n\n"
        + training_section(training, support),
    ]
    return "\n\n".join(sections) + "\n"


def write_report(metrics_dir: Path | str, out_dir: Path | str, cfg: ReportConfig) -> None:
    run = load_run(metrics_dir, cfg.games)
    summaries = policy_summaries(run.eval)
    out_dir = Path(out_dir)
    rates_chart(summaries, run.eval, out_dir / "rates.png", cfg.dpi)
    write_text(out_dir / "results.md",
               render(run, summaries, load_training(metrics_dir, run.seeds), cfg.support))
