"""The report over training seeds, from a metrics tree made of the committed run's files.

tests/data/metrics_295afd0.json holds the metrics of the committed one-seed run (commit
295afd0). The tree built here gives them the seeded layout: five seeds, aria-offline renamed
aria, true_intention, exact and similarity policies and variants, per-seed rates perturbed,
grouping diagnostics in the build files (none for Guess My City, as a game without recorded
intentions) and every grouping rule's key counts.
"""
import copy
import json
import random
from pathlib import Path

import pytest

from src.config import defaults
from src.evaluation.report import GAMES, ReportConfig, SupportConfig, write_report
from src.evaluation.stats import mcnemar_exact, rate_summary
from src.io_utils import InputError, read_json, write_json

REAL = json.loads((Path(__file__).parent / "data" / "metrics_295afd0.json").read_text())
SEEDS = [0, 1, 2, 3, 4]
UNGROUPED = {"guess_my_city"}  # no recorded intentions: grouping null
GROUPING_POLICIES = ("true_intention", "exact", "similarity")  # copies of raw


def renamed(obj):
    """The old policy name aria-offline is aria now."""
    return json.loads(json.dumps(obj).replace('"aria-offline"', '"aria"'))


def set_rates(m: dict, policy: str, rate: float) -> None:
    """Set a policy's main rate (the nearest count of its episodes)."""
    old = m["policies"][policy][m["primary"]]
    n = old["n"]
    m["policies"][policy][m["primary"]] = rate_summary(round(min(max(rate, 0), 1) * n), n)


def seeded_eval(game: str, seed: int, rng: random.Random) -> dict:
    m = renamed(REAL[f"eval/{game}.json"])
    m["train_seed"] = seed
    for policy in GROUPING_POLICIES:
        m["policies"][policy] = copy.deepcopy(m["policies"]["raw"])
        m["episodes_per_policy"][policy] = m["episodes_per_policy"]["raw"]
    m["policy_order"] = ["base", "bc", "raw", *GROUPING_POLICIES, "aria"]
    to_raw = next(c for c in m["comparisons"] if (c["a"], c["b"]) == ("aria", "raw"))
    for i, policy in enumerate(GROUPING_POLICIES):
        m["comparisons"].insert(3 + i, {**copy.deepcopy(to_raw), "b": policy})
    for policy in ("bc", "raw", *GROUPING_POLICIES, "aria"):  # base: one model for every seed
        set_rates(m, policy, m["policies"][policy][m["primary"]]["rate"] + rng.gauss(0, 0.02))
    return m


def grouping(roles: list[str], seed: int) -> dict:
    def keys(count: int, singletons: float, within: float) -> dict:
        return {"keys": count, "singleton_share": singletons, "within_key_variance": within,
                "between_key_variance": 0.02, "key_size_histogram": {"1": count // 2}}

    return {role: {"adjusted_rand_index": 0.30 + 0.01 * seed,
                   "clusters": keys(80 + seed, 0.6, 0.015),
                   "true_intentions": keys(6, 0.0, 0.010),
                   "aggregation_bias_by_intention": {"accept": 0.01,
                                                     "lowball": -0.05 - 0.01 * seed},
                   "invalid_or_truncated_share": 0.5, "weight_share_invalid_or_truncated": 0.4}
            for role in roles}


def grouping_rules(roles: list[str], seed: int, grouped: bool) -> dict:
    """Key counts and singleton shares per rule; no true_intention without intentions."""
    def rule(keys: int, share: float) -> dict:
        return {role: {"keys": keys, "singleton_share": share} for role in roles}

    return {"intention": rule(80 + seed, 0.5), "exact": rule(200, 0.9 + 0.01 * seed),
            "similarity": rule(150, 0.8), "true_intention": rule(6, 0.0) if grouped else None,
            "none": rule(300, 1.0)}


def fabricate(metrics: Path, games=GAMES, seeds=SEEDS) -> None:
    rng = random.Random(0)
    for seed in seeds:
        for game in games:
            write_json(metrics / "eval" / f"s{seed}" / f"{game}.json", seeded_eval(game, seed, rng))
            build = dict(REAL[f"build/{game}.json"])
            roles = list(build["players"])
            build["grouping"] = None if game in UNGROUPED else grouping(roles, seed)
            build["grouping_rules"] = grouping_rules(roles, seed, game not in UNGROUPED)
            write_json(metrics / "build" / f"s{seed}" / f"{game}.json", build)
            select = copy.deepcopy(REAL[f"select_k/{game}.json"])
            select["k"] = {role: k + seed for role, k in select["k"].items()}
            write_json(metrics / "select_k" / f"s{seed}" / f"{game}.json", select)
            rollout = dict(REAL[f"rollout/{game}.json"])
            rollout["invalid_move_rate"] = 0.01 * (1 + seed) if game == "twenty_questions" else 0.6
            write_json(metrics / "rollout" / f"s{seed}" / f"{game}.json", rollout)
        for variant, source in (("aria", "aria"), ("raw", "raw"), ("bc", "bc"),
                                *((policy, "raw") for policy in GROUPING_POLICIES)):
            run = dict(REAL[f"train_offline/{source}.json"], seed=seed)
            write_json(metrics / "train_offline" / f"s{seed}" / f"{variant}.json", run)
    for game in games:
        write_json(metrics / "grad_variance" / f"{game}.json", REAL[f"grad_variance/{game}.json"])
    write_json(metrics / "train_rm.json", REAL["train_rm.json"])
    write_json(metrics / "train_online.json", REAL["train_online.json"])
    write_json(metrics / "prepare_model.json", dict(
        REAL["prepare_model.json"], pretraining={"corpus_rows": 5000, "vocab_size": 4096,
                                                 "final_loss": 2.345678}))
    write_json(metrics / "corpus.json", {"games": {"bargaining": {
        "rows": 1200, "distinct_replies": 300, "intentions": {"accept": 400, "lowball": 800}}}})


def set_seed_rates(metrics: Path, game: str, rates: dict[str, list[float]]) -> None:
    for i, seed in enumerate(SEEDS):
        path = metrics / "eval" / f"s{seed}" / f"{game}.json"
        m = read_json(path)
        for policy, values in rates.items():
            set_rates(m, policy, values[i])
        write_json(path, m)


def report(tmp_path, **overrides) -> str:
    write_report(tmp_path / "metrics", tmp_path / "reports",
                 defaults(ReportConfig, "report", **overrides))
    return (tmp_path / "reports" / "results.md").read_text()


def table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][1:]


def test_report_renders_every_section_in_order(tmp_path):
    fabricate(tmp_path / "metrics")
    text = report(tmp_path)
    headings = ["## Verdicts", "Of 36 rows:", "## Every policy on every game",
                "## Gradient variance", "## Grouping diagnostics", "### Grouping rules",
                "## Reward variance",
                "### Chosen number of intentions k", "## Base policy and training",
                "### Pretraining", "### Offline training", "### Reward model",
                "### Online training"]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    # every policy on every game, with one column per seed
    policies = table_rows(text, "## Every policy on every game")
    assert len(policies) == 4 * 7 and all(line.count("|") == 4 + 5 + 1 for line in policies)
    base = next(line for line in policies if line.startswith("| bargaining (win rate) | base |"))
    assert "| 12.5 [12.5, 12.5] | 12.5 | 12.5 | 12.5 |" in base  # one model: its seeds agree
    # chosen k per seed, base cleanliness, pretraining, training per variant, online smoke run
    assert "| bargaining | alice | split_score | 14 | 15 | 16 | 17 | 18 |" in text
    assert "| twenty_questions | 0.030 (0.010 to 0.050) | 97.0 % | yes |" in text
    assert "| bargaining | 0.600 | 40.0 % | no |" in text
    assert "corpus rows 5000, final loss 2.346, vocab size 4096." in text
    assert "| bargaining | 1200 | 300 | accept 400, lowball 800 |" in text
    offline = table_rows(text, "### Offline training")
    assert [line.split(" | ")[0] for line in offline] == ["| aria", "| raw", "| bc",
                                                          "| true_intention", "| exact",
                                                          "| similarity"]
    assert "| aria | 5 | 384 | 48 | 1.448 | 0.344 → 0.359 |" in text
    assert "**Smoke run**" in text
    png = (tmp_path / "reports" / "rates.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_missing_inputs_are_named_in_one_error(tmp_path):
    metrics = tmp_path / "metrics"
    fabricate(metrics, GAMES[:1], seeds=[0, 1])
    (metrics / "build" / "s1" / "bargaining.json").unlink()
    with pytest.raises(InputError) as err:
        report(tmp_path, games=GAMES[:2])
    message = str(err.value)
    for expected in ("metrics/build/s1/bargaining.json (stage build@1)",
                     "metrics/eval/s0/negotiation.json (stage evaluate@0)",
                     "metrics/eval/s1/negotiation.json (stage evaluate@1)",
                     "metrics/select_k/s1/negotiation.json (stage select-k@1)",
                     "metrics/rollout/s0/negotiation.json (stage rollout@0)",
                     "metrics/grad_variance/negotiation.json (stage grad-variance@negotiation)"):
        assert expected in message
    assert message.count("(stage ") == 1 + 4 * 2 + 1  # the lost build file; negotiation's 9
    assert not (tmp_path / "reports").exists()


def test_without_seed_folders_the_error_says_so(tmp_path):
    (tmp_path / "metrics" / "eval").mkdir(parents=True)
    with pytest.raises(InputError, match="no seed folders"):
        report(tmp_path)


def test_seeds_are_ordered_numerically(tmp_path):
    fabricate(tmp_path / "metrics", seeds=[10, 2, 9])
    text = report(tmp_path)
    assert "3 training seeds (2, 9, 10)" in text
    assert "| game | role | method | s2 | s9 | s10 |" in text


def verdict_line(text: str, game: str, claim: str) -> str:
    return next(line for line in table_rows(text, "## Verdicts")
                if line.startswith(f"| {game} | {claim} |"))


def test_strong_effect_is_reproduced_and_a_tight_null_is_not(tmp_path):
    metrics = tmp_path / "metrics"
    fabricate(metrics)
    set_seed_rates(metrics, "bargaining", {"aria": [k / 150 for k in (60, 63, 61, 64, 58)],
                                           "raw": [k / 150 for k in (15, 18, 16, 14, 15)]})
    raw = [20 / 150, 21 / 150, 20 / 150, 22 / 150, 21 / 150]  # null: one episode either way
    set_seed_rates(metrics, "twenty_questions",
                   {"raw": raw, "aria": [r + d / 150 for r, d in zip(raw, [0, 1, -1, 0, 0])]})
    text = report(tmp_path)
    strong = verdict_line(text, "bargaining", "aria beats raw")
    assert "| **reproduced**:" in strong and "| 5 | 1.55 (½ × 3.1) |" in strong
    assert "| 53.2 vs 36.5 |" in strong and "40.8 / 40.9 (40.0, 42.0, 40.7, 42.7, 38.7)" in strong
    # pooled episode test: the committed run's 5 / 6 discordant pairs of 150, in each of 5 seeds
    assert f"| 25 / 30, p = {mcnemar_exact(25, 30):.3g} (750 pairs) |" in strong
    null = verdict_line(text, "twenty_questions", "aria beats raw")
    assert "| **not reproduced**: the whole interval is below the margin" in null
    assert "| 3.50 (½ × 7.0) |" in null and "| — |" in null  # no paper figure for raw here
    assert "| 29.0 vs 13.5 |" in verdict_line(text, "guess_my_city", "aria beats base")
    assert "| no claim |" in verdict_line(text, "negotiation", "true_intention beats raw")


def test_the_count_line_counts_the_verdict_rows(tmp_path):
    fabricate(tmp_path / "metrics")
    text = report(tmp_path)
    rows = table_rows(text, "## Verdicts")
    counts = {kind: sum(f"| **{kind}**:" in line for line in rows)
              for kind in ("reproduced", "not reproduced", "inconclusive")}
    # 9 claims x 4 games; the fabricated evaluations hold no DPO policy: 8 rows without a verdict
    assert len(rows) == 36 and sum(counts.values()) == 28
    assert (f"Of 36 rows: {counts['reproduced']} reproduced, {counts['not reproduced']} not "
            f"reproduced, {counts['inconclusive']} inconclusive, 8 without a verdict.") in text
    assert sum("no verdict: dpo_" in line for line in rows) == 8
    assert all("seeds needed: " in line for line in rows if "| **inconclusive**:" in line)


def test_grouping_table_and_a_game_without_intentions(tmp_path):
    fabricate(tmp_path / "metrics")
    text = report(tmp_path)
    rows = table_rows(text, "## Grouping diagnostics")
    alice = next(line for line in rows if line.startswith("| bargaining | alice |"))
    assert alice == ("| bargaining | alice | 0.320 (0.300 to 0.340) | 0.600 / 0.000 "
                     "| 82.0 (80.0 to 84.0) / 6.0 | 0.0150 / 0.0200 | 0.0100 / 0.0200 | 0.500 "
                     "| 0.400 | lowball: -0.070 (-0.090 to -0.050) |")
    assert sum(line.startswith("| twenty_questions | agent |") for line in rows) == 1
    assert "| guess_my_city | — | no recorded intentions: grouping not diagnosed |" in text


def test_grouping_rules_table(tmp_path):
    fabricate(tmp_path / "metrics")
    text = report(tmp_path)
    assert ("| game | role | intention: singleton share / keys | exact: singleton share / keys "
            "| similarity: singleton share / keys | true_intention: singleton share / keys "
            "| none: singleton share / keys |") in text
    rows = table_rows(text, "### Grouping rules")
    alice = next(line for line in rows if line.startswith("| bargaining | alice |"))
    assert alice == ("| bargaining | alice | 0.500 / 82.0 (80.0 to 84.0) "
                     "| 0.920 (0.900 to 0.940) / 200.0 | 0.800 / 150.0 | 0.000 / 6.0 "
                     "| 1.000 / 300.0 |")
    city = next(line for line in rows if line.startswith("| guess_my_city | agent |"))
    assert "| n/a / n/a |" in city  # no recorded intentions: true_intention did not run
    assert "| no claim |" in verdict_line(text, "bargaining", "aria beats exact")
    assert "| no claim |" in verdict_line(text, "bargaining", "aria beats similarity")


def test_build_metrics_without_grouping_rules_still_report(tmp_path):
    """Build files written before the grouping registry have no grouping_rules."""
    metrics = tmp_path / "metrics"
    fabricate(metrics)
    for path in (metrics / "build").glob("s*/*.json"):
        m = read_json(path)
        del m["grouping_rules"]
        write_json(path, m)
    assert "No build metrics with grouping rules (build.grouping)." in report(tmp_path)


def test_gradient_variance_without_support_or_width_gets_no_verdict(tmp_path):
    metrics = tmp_path / "metrics"
    fabricate(metrics)
    degenerate = dict(REAL["grad_variance/guess_my_city.json"], records_with_nonzero_weight=200,
                      episodes_with_nonzero_weight=60)
    degenerate["no_baseline"] = dict(degenerate["no_baseline"], interval=[0.5, 0.5], ratio=0.5)
    write_json(metrics / "grad_variance" / "guess_my_city.json", degenerate)
    rows = table_rows(report(tmp_path), "## Gradient variance")
    twenty = next(line for line in rows if line.startswith("| twenty_questions |"))
    assert twenty.count("insufficient data (13 rewarded records from 8 episodes; a verdict "
                        "needs 30 from 20)") == 2  # both estimators
    city = next(line for line in rows if line.startswith("| guess_my_city |"))
    assert "| 0.500 [0.500, 0.500] | insufficient data (zero-width interval" in city
    assert "| 0.706 [0.592, 0.919] | reproduced |" in rows[0]  # bargaining, trainer's estimator


def test_interval_verdicts():
    from src.evaluation.report import interval_verdict

    assert interval_verdict({"ratio": 0.8, "interval": [0.7, 0.95]}) == "reproduced"
    assert interval_verdict({"ratio": 0.9, "interval": [0.7, 1.05]}).startswith("inconclusive")
    assert interval_verdict({"ratio": 1.3, "interval": [1.1, 1.5]}) == "not reproduced"
    assert interval_verdict(None) == "no reward signal"


def test_no_verdict_without_support():
    """The committed Twenty Questions case: one rewarded record spread by aggregation gives a
    ratio of exactly 1/9 with a zero-width interval; it is insufficient data, not reproduced."""
    from src.evaluation.report import gradient_verdict

    support = defaults(SupportConfig, "report.support")
    degenerate = {"records": 16, "episodes": 15, "records_with_nonzero_weight": 9,
                  "episodes_with_nonzero_weight": 1, "bootstrap_resamples": 2000}
    part = {"ratio": 1 / 9, "interval": [1 / 9, 1 / 9], "resamples_without_ratio": 747}
    assert gradient_verdict(degenerate, part, support).startswith("insufficient data (9 rewarded")
    # enough support, but the interval has zero width: still no verdict
    ample = {**degenerate, "records_with_nonzero_weight": 200, "episodes_with_nonzero_weight": 60}
    assert "zero-width" in gradient_verdict(ample, {**part, "share_without_ratio": 0.0}, support)
    # enough support and a real interval, but many resamples dropped: unreliable
    real = {"ratio": 0.5, "interval": [0.4, 0.6]}
    assert "unreliable interval" in gradient_verdict(ample, {**real, "share_without_ratio": 0.3},
                                                     support)
    assert gradient_verdict(ample, {**real, "share_without_ratio": 0.0}, support) == "reproduced"
    # files without the support counts (older runs) carry no verdict either
    assert gradient_verdict({"records": 16, "episodes": 15}, real, support).startswith(
        "insufficient data")


def test_reward_model_and_online_verdicts():
    from src.evaluation.report import online_is_smoke_run, rm_verdict

    support = defaults(SupportConfig, "report.support", rm_held_out_episodes=20,
                       online_episodes=200)
    paired = {"difference": -0.001, "low": -0.002, "high": -0.0001, "episodes": 40}
    assert rm_verdict({"paired_squared_error": paired}, support) == "beats the per-game mean"
    assert rm_verdict({"paired_squared_error": {**paired, "high": 0.001}}, support).startswith(
        "inconclusive")
    assert rm_verdict({"paired_squared_error": {**paired, "episodes": 5}}, support).startswith(
        "insufficient data (5 held-out episodes")
    assert rm_verdict({"mse": 0.1}, support).startswith("insufficient data")
    assert online_is_smoke_run({"episodes": 8}, support)
    assert not online_is_smoke_run({"episodes": 256}, support)
