"""Per-record policy gradients in float32 and under bf16 autocast on the same records: seconds
per record and the aggregated/raw ratios each gives (the tolerance behind
``grad_variance.autocast``).

    python bench/grad_variance_autocast.py --game bargaining --records 32

Reads data/records/<game>.jsonl and models/base (run ``dvc repro build@<game>`` first).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from src.config import defaults  # noqa: E402
from src.training.grad_variance import AUTOCAST, GradVarianceConfig, gradient_variance  # noqa: E402
from src.paths import GameArtifacts  # noqa: E402
from src.training.records import read_records  # noqa: E402
from src.training.reinforce import LoraSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="bargaining")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    records = read_records(args.game, GameArtifacts(args.game, 0).records.parent)  # training seed 0
    lora = defaults(LoraSettings, "train.lora")
    rows = {}
    for autocast in AUTOCAST:
        cfg = defaults(GradVarianceConfig, "grad_variance", records=args.records,
                       autocast=autocast)
        m = gradient_variance(records, cfg, lora, device="cpu")
        rows[autocast] = {"seconds_per_record": m["seconds_per_record"],
                          "ratio_no_baseline": m["no_baseline"]["ratio"],
                          "ratio_constant_baseline": m["constant_baseline"]["ratio"]}
        print(autocast, json.dumps(rows[autocast]), flush=True)
    fp32, bf16 = rows["no"], rows["bf16"]
    summary = {"game": args.game, "records": args.records, "runs": rows,
               "speedup": round(fp32["seconds_per_record"] / bf16["seconds_per_record"], 2),
               "relative_difference": {
                   key: round(abs(bf16[key] / fp32[key] - 1), 5)
                   for key in ("ratio_no_baseline", "ratio_constant_baseline")}}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
