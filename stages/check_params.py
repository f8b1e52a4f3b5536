"""check-params: every section of params.yaml against its dataclass, on every `dvc repro`
(always_changed) -> metrics/params_check.json (the sections checked and the game seed ranges;
no stage depends on it). See src/params_check.py."""
from src.config import run_main
from src.io_utils import write_json
from src.params_check import check_all_params
from src.paths import PARAMS_CHECK


def main() -> None:
    write_json(PARAMS_CHECK, check_all_params())


if __name__ == "__main__":
    run_main(main)
