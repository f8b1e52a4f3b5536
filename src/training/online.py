"""Online RL (docs/method.md §9, online): self-play with the current policy, RM scores as
REINFORCE weights.

Per iteration: every configured game plays ``episodes`` episodes with the current policy
(sampling; self-play in two-player games: one policy in both seats), the reward model scores
each policy action, and one pass of REINFORCE over those actions updates the LoRA adapter,
starting from the aria-offline adapter. Every ``rm_retrain_every`` iterations the reward model
is retrained on everything collected so far: the base-policy rollouts plus every online episode,
re-clustered together and cut at the k per role that select-k chose, then turned into records by
the build stage's own function (docs/method.md §8: same record shape, same left-out filter), so
the RM keeps learning from aggregated, not raw, rewards, and from the records train-rm would
see.

Resumable: after every iteration the run writes the collected episodes, then a checkpoint of
the trainable tensors, optimizer, RNG, iteration and logged history (``src.training.checkpoint``);
a retrained RM is saved beside them. A killed run resumes at the first unfinished iteration and
ends with the same adapter as an uninterrupted run with the same seed. As in train-offline, the
checkpoint folder is not a DVC output (DVC would delete it before the rerun that should resume
from it) and is removed once the adapter and the metrics are written.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from src import distributed
from src.engines import Generation, playing
from src.intention.aggregation import AggregationConfig
from src.intention.clustering import ClusterConfig, cluster_at_chosen_k
from src.intention.records import make_records
from src.games import GamesConfig, make_game
from src.io_utils import InputError, read_json, read_jsonl, write_jsonl
from src.limits import Limits
from src.paths import BASE_MODEL, OnlinePaths
from src.policy.chat import tokenised_from_text
from src.policy.models import adapter_base, load_model
from src.policy.sampling import SamplingConfig
from src.rollout.play import episode_record, play
from src.training.checkpoint import TrainingError, load_checkpoint, save_checkpoint
from src.training.records import GAMES, sample_records
from src.training.reinforce import (NonFinite, encode_records, reinforce_step,
                                    trainable_parameters)
from src.training.reward_model import RewardModel, RMConfig, train_reward_model
from src.training.runs import (STEP_BASELINES, batch_order, export_adapter, finish_run, log_step,
                               open_live, run_fingerprint)
from src.intention.utterances import GameUtterances, read_game_rollouts


@dataclass
class OnlineConfig:
    games: list[str]  # one policy plays all of these
    iterations: int  # collect -> score -> update rounds
    episodes: int  # per game and iteration
    seed: int  # first game seed (rollout: 0.., evaluation: 1000000..); sampling, batches
    sampling: SamplingConfig
    max_actions: int | None  # actions trained on per iteration (seeded sample); null = all
    batch_size: int  # actions per optimizer step
    lr: float  # Adam learning rate
    max_grad_norm: float  # gradient-norm clip
    baseline: str  # none | batch_mean (subtract the minibatch mean of the RM scores)
    rm_retrain_every: int  # K: retrain the RM after every K-th iteration (0 = never)

    def validate(self) -> str | None:
        unknown = sorted(set(self.games) - set(GAMES))
        if not self.games or unknown:
            return f"games must be a non-empty subset of {list(GAMES)}; unknown: {unknown}"
        if min(self.iterations, self.episodes, self.batch_size) < 1:
            return "need iterations, episodes, batch_size >= 1"
        if self.max_actions is not None and self.max_actions < 1:
            return "max_actions must be >= 1 or null"
        if self.lr <= 0 or self.max_grad_norm <= 0 or self.rm_retrain_every < 0:
            return "need lr, max_grad_norm > 0 and rm_retrain_every >= 0"
        if self.baseline not in STEP_BASELINES:  # no game_mean: online has no fixed training set
            return f"baseline '{self.baseline}' is not one of {list(STEP_BASELINES)}"
        return None


@dataclass
class OnlineSettings:
    """The other params sections the online run reads (re-aggregation and RM retraining)."""
    games: GamesConfig
    cluster: ClusterConfig
    aggregation: AggregationConfig
    rm: RMConfig
    limits: Limits  # records left out, as in build
    dtype: str


# -- model ----------------------------------------------------------------------------------
def load_trainable_adapter(path: Path, dtype: str, base: str = BASE_MODEL):
    """(peft model in train mode, tokenizer): a saved LoRA adapter, unmerged and trainable, on
    ``base`` (the adapter's recorded base must name it)."""
    from peft import PeftModel

    model, tokenizer = load_model(adapter_base(path, base), dtype, "cpu", base)
    return PeftModel.from_pretrained(model, path, is_trainable=True).train(), tokenizer


# -- collecting -----------------------------------------------------------------------------
def self_play_iteration(policy, cfg: OnlineConfig, games_cfg: GamesConfig,
                        iteration: int) -> list[dict]:
    """Every game's episodes of one iteration, played together in one lock-step batch by
    ``policy`` (the model as it is now, in eval mode: :func:`src.engines.playing`)."""
    games = []
    for name in cfg.games:
        for j in range(cfg.episodes):
            game = make_game(name, games_cfg)
            game.reset(cfg.seed + iteration * cfg.episodes + j)
            games.append(game)
    mine = [games[i] for i in distributed.shard(len(games))]  # each process plays its share
    play(mine, [{p: policy for p in g.players} for g in mine], cfg.sampling,
         cfg.seed + iteration, desc=f"online iteration {iteration + 1}",
         episode_seeds=[g.seed * len(cfg.games) + cfg.games.index(g.name) for g in mine])
    records = []
    for g in mine:
        record = episode_record(g, f"{g.name}-online-{iteration:04d}-{g.seed}",
                                {p: "online" for p in g.players}, cfg.sampling)
        record["iteration"] = iteration
        records.append(record)
    return distributed.gather_in_order(records, len(games))  # every process gets them all


def turn_action(turn: dict) -> dict:
    """What training and the RM read of a policy turn: the chat, the text and the sampled
    tokens (scored as they were generated, not as the text tokenises)."""
    return {"messages": turn["messages"], "action": turn["text"],
            "truncated": turn.get("truncated", False), "action_ids": turn.get("action_ids")}


def policy_actions(episodes: list[dict]) -> list[dict]:
    """One {game, episode_id, player, messages, action, truncated, action_ids} per policy turn,
    in play order."""
    return [{"game": e["game"], "episode_id": e["episode_id"], "player": t["speaker"],
             **turn_action(t)}
            for e in episodes for t in e["turns"] if t["speaker"] != "env"]


# -- re-aggregation for the RM --------------------------------------------------------------
def retraining_records(game: str, episodes: list[dict], chosen_k: dict[str, int],
                       settings: OnlineSettings) -> list[dict]:
    """The records build would write for ``episodes`` (docs/method.md §8: same shape, same left-out
    filter), with the utterances clustered afresh (one tree) and each role's cut at its
    chosen k."""
    utt = GameUtterances.from_episodes(game, episodes)
    labels = cluster_at_chosen_k(utt, chosen_k, settings.cluster)
    return make_records(utt, labels, settings.aggregation, settings.limits).records


def retrain_reward_model(collected: list[dict], cfg: OnlineConfig, settings: OnlineSettings,
                         paths: OnlinePaths, base: str, iteration: int) -> RewardModel:
    """Retrain on rollouts + collected episodes, save beside the checkpoint, and reload it
    (a resumed run reads the same file, so both runs score with identical weights)."""
    records = []
    for game in cfg.games:
        chosen = read_json(paths.chosen_k / f"{game}.json").get("k")
        if not isinstance(chosen, dict):
            raise InputError(f"{paths.chosen_k / f'{game}.json'}: field 'k' should map roles to k")
        episodes = read_game_rollouts(paths.rollouts / f"{game}.jsonl", game)
        episodes += [e for e in collected if e["game"] == game]
        records += retraining_records(game, episodes, chosen, settings)
    rm = train_reward_model(records, settings.rm, base, settings.dtype)  # data-parallel
    if distributed.is_main():
        rm.save(paths.retrained_rm(iteration))
    distributed.barrier()
    return RewardModel.load(paths.retrained_rm(iteration), base=paths.base)


def current_reward_model(paths: OnlinePaths, iterations_done: int) -> RewardModel:
    """The RM the next iteration scores with: the newest retrained one, else ``models/rm``."""
    retrained = [p for p in paths.checkpoints.glob("rm-*")
                 if int(p.name.removeprefix("rm-")) <= iterations_done]
    return RewardModel.load(max(retrained) if retrained else paths.rm, base=paths.base)


# -- the run --------------------------------------------------------------------------------
def check_inputs(cfg: OnlineConfig, paths: OnlinePaths) -> None:
    """Fail before any compute when an input the run will need is missing."""
    needed = [paths.start, paths.rm]
    if cfg.rm_retrain_every and cfg.rm_retrain_every < cfg.iterations:
        needed += [folder / f"{game}.{ext}" for game in cfg.games
                   for folder, ext in ((paths.rollouts, "jsonl"), (paths.chosen_k, "json"))]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise InputError(f"train-online: missing inputs (run the stages that write them): "
                         f"{', '.join(missing)}")


def iteration_log(episodes: list[dict], scores: list[float], losses: list[float]) -> dict:
    """Logged per iteration: mean episode reward (overall and per game; in self-play a
    two-player game's rewards always sum to 1, so there its deal rate is the signal), the mean
    RM score being maximised, the mean loss and the invalid-move rate."""
    turns = [t for e in episodes for t in e["turns"] if t["speaker"] != "env"]
    entry = {"reward/mean": statistics.fmean(statistics.fmean(e["rewards"].values())
                                             for e in episodes)}
    for game in dict.fromkeys(e["game"] for e in episodes):
        mine = [e for e in episodes if e["game"] == game]
        entry[f"reward/{game}"] = statistics.fmean(statistics.fmean(e["rewards"].values())
                                                   for e in mine)
        if "deal" in mine[0]["outcome"]:
            entry[f"deal_rate/{game}"] = statistics.fmean(bool(e["outcome"]["deal"]) for e in mine)
    entry["rm_score"] = statistics.fmean(scores)
    entry["loss"] = statistics.fmean(losses)
    entry["invalid_move_rate"] = sum(not t["valid"] for t in turns) / len(turns)
    return entry


def train_online(cfg: OnlineConfig, settings: OnlineSettings, paths: OnlinePaths | None = None,
                 stop_after_iterations: int | None = None,
                 generation: Generation | None = None) -> dict:
    """Run (or resume) the online iterations and export the adapter; return metrics.
    ``stop_after_iterations`` ends this call early, as a kill would, so tests can resume;
    ``generation``: the engine that plays (default: the model in memory)."""
    from accelerate import Accelerator

    began = time.perf_counter()
    paths = paths or OnlinePaths()
    check_inputs(cfg, paths)
    distributed.rank()  # processes talk over gloo without CUDA (before Accelerator picks)
    accelerator = Accelerator()
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_trainable_adapter(paths.start, settings.dtype, paths.base)
    distributed.seed_per_process(cfg.seed)
    optimizer = torch.optim.Adam(trainable_parameters(model).values(), lr=cfg.lr)
    fingerprint = run_fingerprint(
        [cfg, settings], [paths.start, paths.rm, paths.rollouts, paths.chosen_k])
    state = load_checkpoint(paths.checkpoints, fingerprint, model, optimizer, accelerator)
    resumed_from = state.step
    model, optimizer = accelerator.prepare(model, optimizer)
    trained = accelerator.unwrap_model(model)
    collected = ([e for e in read_jsonl(paths.episodes_file) if e["iteration"] < state.step]
                 if state.step else [])
    rm = current_reward_model(paths, state.step)
    live = open_live(paths.live, state.history) if accelerator.is_main_process else None

    while state.step < cfg.iterations:
        if stop_after_iterations is not None and state.step - resumed_from >= stop_after_iterations:
            return {"iterations": state.step, "completed": False}
        iteration = state.step
        with playing(trained, tokenizer, "online", generation) as player:
            episodes = self_play_iteration(player, cfg, settings.games, iteration)
        actions = policy_actions(episodes)
        scores = rm.score(actions)
        losses = reinforce_pass(model, optimizer, accelerator, tokenizer, actions, scores, cfg,
                                iteration)
        collected += episodes
        entry = iteration_log(episodes, scores, losses)
        if cfg.rm_retrain_every and (iteration + 1) % cfg.rm_retrain_every == 0 \
                and iteration + 1 < cfg.iterations:
            rm = retrain_reward_model(collected, cfg, settings, paths,
                                      trained.peft_config["default"].base_model_name_or_path,
                                      iteration + 1)
        state.history.append(entry)
        state.step += 1
        if live is not None:
            log_step(live, entry)
        # every iteration, the last included: a failed final write must not lose the run
        if accelerator.is_main_process:
            write_jsonl(paths.episodes_file, collected)
        save_checkpoint(paths.checkpoints, state, fingerprint, trained, optimizer,
                        accelerator)
    metrics = {"completed": True, "iterations": cfg.iterations,
               "resumed_from_iteration": resumed_from, "episodes": len(collected),
               "records_tokenised_from_text": tokenised_from_text(policy_actions(collected)),
               "final": state.history[-1], "seconds": round(time.perf_counter() - began, 1)}
    if accelerator.is_main_process:
        export_adapter(trained, tokenizer, paths.output)
        live.end()
        finish_run(metrics, paths.metrics, paths.checkpoints)
    accelerator.wait_for_everyone()
    return metrics


def reinforce_pass(model, optimizer, accelerator, tokenizer, actions: list[dict],
                   scores: list[float], cfg: OnlineConfig, iteration: int) -> list[float]:
    """One pass of REINFORCE (the offline objective) over a seeded sample of the actions,
    weighted by their RM scores; returns the loss of every step. Dropout is seeded per
    iteration, so a resumed run draws the same masks as an uninterrupted one."""
    torch.manual_seed(cfg.seed + iteration)
    chosen = sample_records(list(zip(actions, scores)), cfg.max_actions, cfg.seed + iteration)
    encoded = encode_records([action for action, _ in chosen], tokenizer)
    weights = torch.tensor([score for _, score in chosen], device=accelerator.device)
    losses = []
    for step in range(math.ceil(len(chosen) / cfg.batch_size)):
        idx = batch_order(len(chosen), cfg.batch_size, cfg.seed + iteration, step)
        try:
            losses.append(reinforce_step(model, optimizer, accelerator, [encoded[i] for i in idx],
                                         weights[idx], tokenizer.pad_token_id, cfg.baseline,
                                         cfg.max_grad_norm))
        except NonFinite as bad:
            raise TrainingError(f"online iteration {iteration + 1}: {bad} at step {step + 1}; stopped. "
                                + ("The checkpoint of the previous iteration is kept"
                                   if iteration else "No checkpoint was written yet")) from None
    return losses
