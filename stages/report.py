"""report: reports/results.md (a verdict per claim over training seeds, every policy on every
game, gradient variance, grouping diagnostics, reward variance and chosen k, the base and
training) and reports/rates.png, from the metrics of earlier stages."""
from src.config import load_section, run_main
from src.evaluation.report import ReportConfig, write_report
from src.paths import METRICS, REPORTS


def main() -> None:
    write_report(METRICS, REPORTS, load_section("report", ReportConfig))


if __name__ == "__main__":
    run_main(main)
