"""evaluate: the base model and every variant trained with one seed, on each game's fixed
evaluation episodes -> metrics/eval/s<seed>/<game>.json (rates with 95 % Wilson intervals,
paired comparisons) and the episodes in data/eval/s<seed>/<game>.jsonl. ``--iteration i``
(i >= 2, src/rollout/iterations.py): iteration i's aria policy on the same episodes, compared with
iteration 1's -> metrics/eval/i<i>/s<seed>/<game>.json."""
from src import distributed
from src.engines import Generation
from src.paths import BASE_MODEL, GameArtifacts, runs_from_args
from src.config import load_section, run_main
from src.evaluation.evaluate import EvaluateConfig, evaluate_game
from src.games import GamesConfig
from src.io_utils import read_jsonl, write_json, write_jsonl
from src.evaluation.iterations import iteration_evaluation, with_first_iteration
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig


def main() -> None:
    runs = runs_from_args(__doc__)
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("evaluate", EvaluateConfig)
    iteration = runs[0].iteration
    if iteration > 1:
        cfg = iteration_evaluation(cfg, runs[0].seed, iteration)
    generation = Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                            model_cfg.dtype, model_cfg.device)
    for artifacts in runs:
        records, metrics = evaluate_game(artifacts.game, games_cfg, cfg, generation, artifacts.seed)
        if distributed.is_main():  # episodes were shared by the processes; main writes
            if iteration > 1:
                first = read_jsonl(GameArtifacts(artifacts.game, artifacts.seed).eval_records)
                metrics = with_first_iteration(metrics, records, first, iteration)
            write_jsonl(artifacts.eval_records, records)
            write_json(artifacts.eval_metrics, metrics)


if __name__ == "__main__":
    run_main(main)
