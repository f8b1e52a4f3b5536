"""The report renders every table and the chart from fabricated metrics files."""
import pytest

from src.config import defaults
from src.io_utils import InputError, write_json
from src.evaluation.report import GAMES, ReportConfig, write_report
from src.evaluation.stats import rate_summary

POLICIES = ["base", "bc", "raw", "aria-offline", "aria-online"]
TWO_PLAYER = {"bargaining", "negotiation"}


def fabricate(metrics_dir, games):
    for i, game in enumerate(games):
        roles = ["alice", "bob"] if game in TWO_PLAYER else ["agent"]
        policies = {}
        for j, name in enumerate(POLICIES):
            m = {"episodes": 16, "mean_reward": 0.5,
                 "invalid_move_rate": rate_summary(j, 40)}
            if game in TWO_PLAYER:
                m.update(win_rate=rate_summary(4 + j, 16), tie_rate=rate_summary(2, 16),
                         deal_rate=rate_summary(10, 16),
                         mean_payoff_share={"mean": 0.5, "n": 10})
            else:
                m.update(success_rate=rate_summary(j, 16), mean_turns_to_solve=None)
            policies[name] = m
        write_json(metrics_dir / "eval" / f"{game}.json", {
            "game": game, "primary": "win_rate" if game in TWO_PLAYER else "success_rate",
            "episodes_per_policy": 16, "policies": policies, "policy_order": POLICIES})
        write_json(metrics_dir / "build" / f"{game}.json", {"game": game, "players": {
            role: {"k": 7 + i, "raw_variance": 0.2, "aggregated_variance": 0.015,
                   "variance_ratio": 0.075, "keys": 30, "mean_instances_per_key": 3.5}
            for role in roles}})
        part = {"ratio": 0.4, "interval": [0.3, 0.55], "resamples_without_ratio": 0,
                "share_without_ratio": 0.0}
        write_json(metrics_dir / "grad_variance" / f"{game}.json", {
            "game": game, "records": 96, "episodes": 30, "records_with_nonzero_weight": 40,
            "episodes_with_nonzero_weight": 25, "no_baseline": part,
            "constant_baseline": dict(part, ratio=0.2)})
        write_json(metrics_dir / "select_k" / f"{game}.json", {
            "game": game, "method": "split_score", "k": {role: 7 + i for role in roles}})


def test_report_renders_tables_and_chart(tmp_path):
    fabricate(tmp_path / "metrics", GAMES)
    write_report(tmp_path / "metrics", tmp_path / "reports", defaults(ReportConfig, "report"))
    text = (tmp_path / "reports" / "results.md").read_text()
    for heading in ("## Evaluation", "## Reward variance", "## Policy-gradient variance",
                    "## Chosen number of intentions k"):
        assert heading in text
    assert "| 96 (30) | 40 (25) | 0.400 [0.300, 0.550] | 0.200 [0.300, 0.550] | 0 |" in text
    assert "| aggregation lowers policy-gradient variance | bargaining | lower (no figure) " \
           "| ratio 0.40 [0.30, 0.55] | 40 rewarded of 96 records, 25 of 30 episodes | — " \
           "| reproduced |" in text
    assert "holds by construction (a conditional mean); drop 92 %, 92 %" in text
    assert "## What this scale can and cannot decide" in text
    # one row per policy in the main table, with the Wilson interval of 8/16 for aria-online
    main_table = text.split("## Evaluation")[1].split("![rates]")[0]
    assert sum(line.startswith("| aria-online |") for line in main_table.splitlines()) == 1
    assert "50.0 [28.0, 72.0]" in main_table
    assert "| negotiation | bob | 8 | 0.2000 | 0.0150 | 0.075 | 30 | 3.50 |" in text
    assert "| guess_my_city | split_score | agent 10 |" in text
    png = (tmp_path / "reports" / "rates.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_missing_inputs_are_named(tmp_path):
    fabricate(tmp_path / "metrics", GAMES[:1])
    with pytest.raises(InputError) as err:
        write_report(tmp_path / "metrics", tmp_path / "reports", defaults(ReportConfig, "report", games=GAMES[:2]))
    message = str(err.value)
    assert "metrics/eval/negotiation.json (stage evaluate@negotiation)" in message
    assert "metrics/select_k/negotiation.json (stage select-k@negotiation)" in message
    assert "bargaining" not in message
    assert not (tmp_path / "reports").exists()


def test_verdicts_follow_the_tests_and_intervals():
    from src.evaluation.report import comparison_verdict, interval_verdict

    base = {"detectable_difference": 0.2, "paired_detectable_difference": 0.12}
    assert comparison_verdict({**base, "mcnemar_p": 0.01, "difference": 0.2}) == "reproduced"
    assert comparison_verdict({**base, "mcnemar_p": 0.01, "difference": -0.2}).startswith("not reproduced")
    assert "12 pp paired, 20 pp unpaired" in comparison_verdict({**base, "mcnemar_p": 0.3, "difference": 0.1})
    assert interval_verdict({"ratio": 0.8, "interval": [0.7, 0.95]}) == "reproduced"
    assert interval_verdict({"ratio": 0.9, "interval": [0.7, 1.05]}).startswith("inconclusive")
    assert interval_verdict({"ratio": 1.3, "interval": [1.1, 1.5]}) == "not reproduced"
    assert interval_verdict(None) == "no reward signal"


def test_no_verdict_without_support():
    """The committed Twenty Questions case: one rewarded record spread by aggregation gives a
    ratio of exactly 1/9 with a zero-width interval; it is insufficient data, not reproduced."""
    from src.evaluation.report import SupportConfig, gradient_verdict

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
    from src.evaluation.report import SupportConfig, online_is_smoke_run, rm_verdict

    support = defaults(SupportConfig, "report.support", rm_held_out_episodes=20, online_episodes=200)
    paired = {"difference": -0.001, "low": -0.002, "high": -0.0001, "episodes": 40}
    assert rm_verdict({"paired_squared_error": paired}, support) == "beats the per-game mean"
    assert rm_verdict({"paired_squared_error": {**paired, "high": 0.001}}, support).startswith(
        "inconclusive")
    assert rm_verdict({"paired_squared_error": {**paired, "episodes": 5}}, support).startswith(
        "insufficient data (5 held-out episodes")
    assert rm_verdict({"mse": 0.1}, support).startswith("insufficient data")
    assert online_is_smoke_run({"episodes": 8}, support)
    assert not online_is_smoke_run({"episodes": 256}, support)
