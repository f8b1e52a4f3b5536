"""grad-variance: per-record policy gradients at the start state, the aggregated/raw ratio of
minibatch-gradient variance with bootstrap intervals (docs/method.md §13) for one game
-> metrics/grad_variance/<game>.json. The start state is train-offline's (train.lora)."""
from src import distributed
from src.config import load_section, read_params, run_main, to_config
from src.io_utils import write_json
from src.limits import Limits, records_within_limits
from src.policy.models import ModelConfig, load_tokenizer
from src.training.grad_variance import GradVarianceConfig, gradient_variance
from src.paths import BASE_MODEL, runs_from_args
from src.training.records import read_records
from src.training.reinforce import LoraSettings


def main() -> None:
    [artifacts] = runs_from_args(__doc__)  # --game, and --seed: the first training seed (its records)
    model_cfg = load_section("model", ModelConfig)
    lora = to_config(LoraSettings, (read_params().get("train") or {}).get("lora"),
                     "params.yaml: train.lora")
    cfg = load_section("grad_variance", GradVarianceConfig)
    records, left_out = records_within_limits(read_records(artifacts.game, artifacts.records.parent),
                                              load_section("limits", Limits),
                                              load_tokenizer(BASE_MODEL))
    metrics = gradient_variance(records, cfg, lora, dtype=model_cfg.dtype,
                                device=model_cfg.device)
    if distributed.is_main():  # minibatches were shared by the processes
        write_json(artifacts.grad_variance_metrics,
                   {"game": artifacts.game, **metrics, "records_left_out": left_out})


if __name__ == "__main__":
    run_main(main)
