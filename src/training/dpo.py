"""DPO baselines (docs/method.md §9.1): step-wise and trajectory-wise preference pairs built
from the training records, trained with TRL's ``DPOTrainer`` as a LoRA adapter on the base
policy, like the REINFORCE variants (so evaluate loads ``dpo_step`` / ``dpo_trajectory`` the
same way).

Pairs (a function of the records, the labels and the training seed only):

- **step** (:func:`step_pairs`): two action instances of the same game and player in the same
  *clustered state*, the key aggregation uses (docs/method.md §8) without the action's own
  label: (c(u_1), ..., c(u_{i-1})), or its last ``build.history_window`` labels. Every two
  actions of a state whose aggregated rewards differ by more than ``dpo.margin`` make a pair,
  the higher one chosen. Two actions with one text never pair (their keys, hence rewards,
  coincide).
- **trajectory** (:func:`trajectory_pairs`): a won (episode reward 1) and a lost (0) episode
  of the same game, seen from the same player (role); ties (0.5) are left out. Setups differ per
  episode, so won and lost episodes are paired by a seeded shuffle of each list, cycled to the
  longer one (every such episode is used at least once). The trajectory-level preference
  (won over lost) is applied at every aligned turn t = 1..min(T_won, T_lost): chosen = the won
  player's t-th action, rejected = the lost player's t-th action, each scored under the exact
  prompt it was generated from (the two prompts differ: different setups and histories). This
  is the per-turn decomposition of trajectory DPO (as in ETO, whose trajectories also see
  different observations); turns with identical action texts are left out.

Both sides of a pair are tokenised by :class:`src.policy.chat.ChatFormat` (the generation chat
template, the sampled action tokens), so DPO scores exactly what the policy saw and emitted.
TRL's own text tokenisation assumes one shared prompt; here each side keeps its own, so the
examples reach ``DPOTrainer`` pre-tokenised with a collator that marks each side's action
tokens as its completion. The loss (``sigmoid``: -log σ(β[(log π - log π_ref)(chosen) -
(log π - log π_ref)(rejected)])), the reference (the base model: the LoRA adapter disabled)
and the optimisation are TRL's.
"""
from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.io_utils import InputError
from src.training.records import NothingToLearn

KINDS = ("step", "trajectory")


@dataclass
class DpoConfig:
    """Params section ``dpo`` (train-dpo). The LoRA settings and games are train's."""
    kinds: list[str]  # the pair constructions dvc.yaml trains per seed: step | trajectory
    beta: float  # DPO temperature β (TRL's beta)
    margin: float  # step: the chosen action's aggregated reward exceeds the rejected one's by more than this
    max_pairs_per_game: int | None  # fixed-seed sample of pairs per game (CPU budget); null = all
    epochs: int  # passes over the pairs
    batch_size: int  # pairs per optimizer step
    lr: float  # AdamW learning rate (constant, no weight decay)
    max_grad_norm: float  # gradient-norm clip

    def validate(self) -> str | None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if not self.kinds or unknown:
            return f"kinds must be a non-empty subset of {list(KINDS)}; unknown: {unknown}"
        if self.beta <= 0 or self.margin < 0 or self.lr <= 0 or self.max_grad_norm <= 0:
            return "need beta, lr, max_grad_norm > 0 and margin >= 0"
        if min(self.epochs, self.batch_size) < 1:
            return "need epochs, batch_size >= 1"
        if self.max_pairs_per_game is not None and self.max_pairs_per_game < 1:
            return "max_pairs_per_game must be >= 1 or null"
        return None


Pair = tuple[dict, dict]  # (chosen record, rejected record)


def state_keys(game: str, rollouts: Path, labels: Path, window: int) -> dict[tuple[str, int], int]:
    """(episode id, position) -> id of the clustered state the action was taken in: the
    aggregation key's history part (docs/method.md §8), from the label stage's labels."""
    from src.intention.aggregation import history_key_ids
    from src.intention.labels import read_labels
    from src.intention.utterances import GameUtterances, read_game_rollouts

    utt = GameUtterances.from_episodes(game, read_game_rollouts(rollouts, game))
    matrix, _ = read_labels(labels, utt)
    history = history_key_ids(matrix, window)
    out = {}
    for e, episode in enumerate(utt.episodes):
        for i in range(int(utt.lengths[e])):
            out[(episode["episode_id"], i)] = -1 if i == 0 else int(history[e, i - 1])
    return out


def _sample(pairs: list[Pair], limit: int | None, seed: int) -> list[Pair]:
    if limit is None or len(pairs) <= limit:
        return pairs
    keep = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[i] for i in keep]


def step_pairs(records: list[dict], states: dict[tuple[str, int], int], margin: float,
               limit: int | None, seed: int) -> list[Pair]:
    """Step-wise pairs of one game's records (module docstring), in file order, then at most
    ``limit`` of them by a fixed-seed sample."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        where = (record["episode_id"], record.get("position"))
        if where not in states:
            raise InputError(f"record of episode '{where[0]}' position {where[1]} has no label "
                             "(records and labels of different rollouts? rerun build)")
        groups.setdefault((record["game"], record["player"], states[where]), []).append(record)
    pairs = []
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if abs(a["reward"] - b["reward"]) > margin and a["action"] != b["action"]:
                    pairs.append((a, b) if a["reward"] > b["reward"] else (b, a))
    return _sample(pairs, limit, seed)


def episode_reward(record: dict) -> float:
    """The player's episode reward R (build writes it into every record)."""
    value = record.get("episode_reward")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InputError(f"record of episode '{record['episode_id']}' ({record['player']}, turn "
                         f"{record['turn']}): field 'episode_reward' should be a number "
                         "(records from an older build? rerun build)")
    return float(value)


def trajectory_pairs(records: list[dict], limit: int | None, seed: int) -> list[Pair]:
    """Trajectory-wise pairs of one game's records (module docstring), at most ``limit`` by a
    fixed-seed sample."""
    episodes: dict[tuple[str, str, str], list[dict]] = {}
    for record in records:
        episodes.setdefault((record["game"], record["player"], record["episode_id"]), []).append(record)
    pairs = []
    for game, player in sorted({(g, p) for g, p, _ in episodes}):
        mine = {e: sorted(rs, key=lambda r: r["turn"]) for (g, p, e), rs in episodes.items()
                if (g, p) == (game, player)}
        won = sorted(e for e, rs in mine.items() if episode_reward(rs[0]) == 1.0)
        lost = sorted(e for e, rs in mine.items() if episode_reward(rs[0]) == 0.0)
        if not won or not lost:
            continue
        rng = random.Random(f"{seed}:{game}:{player}")
        rng.shuffle(won)
        rng.shuffle(lost)
        for n in range(max(len(won), len(lost))):
            good, bad = mine[won[n % len(won)]], mine[lost[n % len(lost)]]
            by_turn = {r["turn"]: r for r in bad}
            pairs += [(r, by_turn[r["turn"]]) for r in good
                      if r["turn"] in by_turn and r["action"] != by_turn[r["turn"]]["action"]]
    return _sample(pairs, limit, seed)


def build_pairs(kind: str, records_by_game: dict[str, list[dict]], cfg: DpoConfig, seed: int,
                states_by_game: dict[str, dict] | None = None) -> dict[str, list[Pair]]:
    """Every game's pairs of one kind; a game's sample is drawn with the training seed."""
    if kind not in KINDS:
        raise ValueError(f"unknown DPO kind '{kind}'; expected one of {KINDS}")
    out = {}
    for game, records in records_by_game.items():
        if kind == "step":
            out[game] = step_pairs(records, (states_by_game or {})[game], cfg.margin,
                                   cfg.max_pairs_per_game, seed)
        else:
            out[game] = trajectory_pairs(records, cfg.max_pairs_per_game, seed)
    return out


def no_pairs_reason(kind: str, records_by_game: dict[str, list[dict]], margin: float) -> str:
    if not any(records_by_game.values()):
        return "no records"
    if kind == "step":
        return (f"no two actions of one game, player and clustered state have aggregated rewards "
                f"that differ by more than dpo.margin {margin}")
    return "no game and player has both a won and a lost episode (with different actions at a turn)"


def encode_pair(fmt, pair: Pair) -> dict:
    """Both sides through the generation chat template, each with its own prompt."""
    (chosen, c_start), (rejected, r_start) = map(fmt.encode_record, pair)
    return {"chosen_prompt_ids": chosen[:c_start], "chosen_ids": chosen[c_start:],
            "rejected_prompt_ids": rejected[:r_start], "rejected_ids": rejected[r_start:]}


@dataclass
class PairCollator:
    """A batch for TRL's DPO loss: rows [chosen..., rejected...], right-padded, with
    ``completion_mask`` on each side's action tokens (what TRL's own collator produces, except
    that each side keeps its own prompt)."""
    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict:
        rows = [(e["chosen_prompt_ids"], e["chosen_ids"]) for e in examples] + \
               [(e["rejected_prompt_ids"], e["rejected_ids"]) for e in examples]
        width = max(len(p) + len(c) for p, c in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        completion = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, action) in enumerate(rows):
            n = len(prompt) + len(action)
            input_ids[i, :n] = torch.tensor(list(prompt) + list(action))
            attention[i, :n] = 1
            completion[i, len(prompt):n] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def _trainer_class():
    from trl import DPOTrainer

    class PretokenisedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer on examples already tokenised by ChatFormat: its dataset
        preparation (prompt extraction, text tokenisation) is skipped, nothing else changes."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PretokenisedDPOTrainer


def make_trainer(model, tokenizer, examples: list[dict], cfg: DpoConfig, lora, seed: int,
                 work_dir: Path, progress: bool = True):
    """TRL's trainer for ``examples`` (from :func:`encode_pair`): a fresh LoRA (``lora``:
    train.lora, init fixed by ``seed``) on ``model``; the reference is the adapter disabled."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig

    args = DPOConfig(
        output_dir=str(work_dir), per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs, learning_rate=cfg.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=cfg.max_grad_norm, beta=cfg.beta,
        loss_type=["sigmoid"], max_length=None, seed=seed, data_seed=seed, logging_steps=1,
        save_strategy="no", report_to="none", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=not progress, use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=False,  # a tiny model: recomputing activations costs more than it saves
    )
    peft_config = None
    if lora.enabled:
        peft_config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                 lora_dropout=lora.dropout, target_modules=list(lora.target_modules))
    torch.manual_seed(seed)  # the LoRA init (get_peft_model runs inside the trainer's __init__)
    ref_model = None
    if not lora.enabled:  # full fine-tuning: a frozen copy of the base is the reference
        import copy
        ref_model = copy.deepcopy(model).eval()
    trainer = _trainer_class()(
        model=model, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer, data_collator=PairCollator(tokenizer.pad_token_id),
        peft_config=peft_config)
    if progress:  # the bar, without a printed dict of every step's logs (they go to the metrics)
        from transformers.trainer_callback import ProgressCallback

        class BarOnly(ProgressCallback):
            def on_log(self, *args, **kwargs):
                pass

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(BarOnly())
    return trainer


def train_dpo(records_by_game: dict[str, list[dict]], kind: str, cfg: DpoConfig, lora,
              base: str, output: Path, work_dir: Path, seed: int = 0, dtype: str = "float32",
              states_by_game: dict[str, dict] | None = None, progress: bool = True) -> dict:
    """Build the pairs, train, write the adapter to ``output``; return the metrics."""
    from src.policy.chat import ChatFormat
    from src.policy.models import load_model
    from src.training.runs import export_adapter

    began = time.perf_counter()
    pairs_by_game = build_pairs(kind, records_by_game, cfg, seed, states_by_game)
    pairs = [pair for game in records_by_game for pair in pairs_by_game[game]]
    if not pairs:
        raise NothingToLearn(f"dpo_{kind}, seed {seed}: no preference pair: "
                             f"{no_pairs_reason(kind, records_by_game, cfg.margin)}")
    model, tokenizer = load_model(base, dtype, "cpu")
    fmt = ChatFormat(tokenizer)
    examples = [encode_pair(fmt, pair) for pair in pairs]
    trainer = make_trainer(model, tokenizer, examples, cfg, lora, seed, work_dir, progress)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    trained = trainer.model
    if lora.enabled:
        trained.peft_config["default"].base_model_name_or_path = str(base)
    export_adapter(trained, tokenizer, output)
    shutil.rmtree(work_dir, ignore_errors=True)  # the trainer's scratch folder (nothing saved)
    gaps = [c["reward"] - r["reward"] for c, r in pairs]
    return {
        "kind": kind, "variant": f"dpo_{kind}", "seed": seed, "pairs": len(pairs),
        "pairs_per_game": {game: len(pairs_by_game[game]) for game in records_by_game},
        "mean_reward_gap": round(float(np.mean(gaps)), 6),
        "steps": trainer.state.global_step, "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "beta": cfg.beta, "margin": cfg.margin if kind == "step" else None,
        "seconds": round(time.perf_counter() - began, 1),
    }
