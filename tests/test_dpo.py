"""DPO baselines (docs/method.md §9.1): TRL's sigmoid loss against the formula, the step-wise
and trajectory-wise pairs on hand-built records, and a short real run on the tiny model."""
from __future__ import annotations

import math

import pytest
import torch

from src.config import defaults
from src.training.dpo import (DpoConfig, PairCollator, build_pairs, encode_pair, make_trainer,
                              step_pairs, train_dpo, trajectory_pairs)
from src.training.records import NothingToLearn
from src.training.reinforce import LoraSettings
from tests.synthetic_records import make_record


def dpo_config(**changes) -> DpoConfig:
    return defaults(DpoConfig, "dpo", **{"max_pairs_per_game": None, "epochs": 1,
                                         "batch_size": 2, **changes})


def lora() -> LoraSettings:
    return defaults(LoraSettings, "train.lora")


def record(game="bargaining", episode=0, player="alice", turn=1, action="OFFER $50",
           reward=0.5, episode_reward=0.0, context="Your move.") -> dict:
    r = make_record(game, episode, action=action, reward=reward, raw_reward=reward,
                    won=episode_reward == 1.0, context=context, turn=turn)
    return {**r, "player": player, "episode_reward": episode_reward}


# --- the loss ------------------------------------------------------------------------------

def action_logp(model, prompt: list[int], action: list[int]) -> torch.Tensor:
    """Sum of log pi(action token | prompt, earlier action tokens), computed here by hand."""
    ids = torch.tensor([prompt + action])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return logp[len(prompt) - 1:].sum()


def test_trl_sigmoid_loss_equals_the_dpo_formula(tiny_model_dir, tmp_path):
    from src.policy.chat import ChatFormat
    from src.policy.models import load_model

    model, tokenizer = load_model(tiny_model_dir, "float32", "cpu")
    chosen = record(episode=0, action="OFFER $60", reward=0.9, context="Round 1. Offer.")
    rejected = record(episode=1, action="I reject.", reward=0.1, context="Round 1, your offer.")
    example = encode_pair(ChatFormat(tokenizer), (chosen, rejected))
    beta = 0.5
    trainer = make_trainer(model, tokenizer, [example], dpo_config(beta=beta), lora(), 0,
                           tmp_path / "work", progress=False)
    policy = trainer.model
    torch.manual_seed(1)
    with torch.no_grad():  # move the policy away from the reference (LoRA B starts at 0)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    policy.eval()
    batch = PairCollator(tokenizer.pad_token_id)([example])
    with torch.no_grad():
        trl_loss = trainer.compute_loss(policy, batch).item()
        pi = [action_logp(policy, example[f"{s}_prompt_ids"], example[f"{s}_ids"])
              for s in ("chosen", "rejected")]
        with policy.disable_adapter():
            ref = [action_logp(policy, example[f"{s}_prompt_ids"], example[f"{s}_ids"])
                   for s in ("chosen", "rejected")]
    margin = (pi[0] - ref[0]) - (pi[1] - ref[1])
    by_hand = -torch.nn.functional.logsigmoid(beta * margin).item()
    assert abs(margin.item()) > 1e-3  # the check is not the trivial log 2
    assert trl_loss == pytest.approx(by_hand, rel=1e-5, abs=1e-6)


def test_the_collator_marks_each_sides_own_action_tokens():
    example = {"chosen_prompt_ids": [1, 2, 3], "chosen_ids": [4, 5],
               "rejected_prompt_ids": [6], "rejected_ids": [7, 8, 9]}
    batch = PairCollator(0)([example])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch["completion_mask"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 0]]


# --- pairs ---------------------------------------------------------------------------------

def step_records() -> tuple[list[dict], dict]:
    """Alice and Bob in one bargaining state (id 7) and Alice in another (id 8)."""
    rows = [
        record(episode=0, player="alice", action="OFFER $60", reward=0.9),   # state 7
        record(episode=1, player="alice", action="OFFER $40", reward=0.5),   # state 7: 0.4 below
        record(episode=2, player="alice", action="OFFER $50", reward=0.85),  # state 7: 0.05 below the first
        record(episode=3, player="bob", action="ACCEPT", reward=0.1),        # state 7, other player
        record(episode=4, player="alice", action="OFFER $90", reward=0.0),   # state 8 alone
        record(episode=5, player="alice", action="OFFER $60", reward=0.9),   # state 7, text of episode 0
    ]
    states = {(r["episode_id"], r["position"]): (8 if r["episode_id"].endswith("4") else 7)
              for r in rows}
    return rows, states


def names(pairs):
    return [(c["episode_id"][-1], r["episode_id"][-1]) for c, r in pairs]


def test_step_pairs_keep_the_margin_the_state_and_the_player():
    rows, states = step_records()
    pairs = step_pairs(rows, states, margin=0.1, limit=None, seed=0)
    # 0 > 1 and 2 > 1 and 5 > 1 (> 0.1 apart); 0 vs 2 within the margin; 0 vs 5 one text;
    # bob's action never meets alice's; episode 4 is alone in its state
    assert names(pairs) == [("0", "1"), ("2", "1"), ("5", "1")]
    assert all(c["reward"] - r["reward"] > 0.1 for c, r in pairs)
    assert names(step_pairs(rows, states, margin=0.38, limit=None, seed=0)) == [("0", "1"),
                                                                                ("5", "1")]
    assert step_pairs(rows, states, margin=0.5, limit=None, seed=0) == []


def test_the_state_is_the_aggregation_keys_history(tmp_path):
    """Two actions share a state exactly when everything said before them has the same labels
    (window 0); the opening move's state is the empty history."""
    import json

    from src.training.dpo import state_keys
    from tests.synthetic_rollouts import synthetic_rollouts, write_rollouts

    rows = synthetic_rollouts("bargaining", episodes=12)
    rollouts = write_rollouts(tmp_path / "rollouts.jsonl", rows)
    labels = {e["episode_id"]: [len(t["text"]) % 2 for t in e["turns"]] for e in rows}
    (tmp_path / "labels.json").write_text(json.dumps(
        {"episodes": [{"episode_id": k, "labels": v} for k, v in labels.items()]}))
    states = state_keys("bargaining", rollouts, tmp_path / "labels.json", window=0)
    where = list(states)
    assert all(states[w] == -1 for w in where if w[1] == 0)
    for a in where:
        for b in where:
            same_history = labels[a[0]][:a[1]] == labels[b[0]][:b[1]]
            assert (states[a] == states[b]) == same_history, (a, b)


def test_step_pairs_never_cross_games():
    rows, states = step_records()
    other = [{**r, "game": "negotiation"} for r in rows[1:2]]  # the same state id, another game
    assert names(step_pairs(rows[:1] + other, states, 0.1, None, 0)) == []


def test_pairs_are_a_function_of_the_seed():
    rows, states = step_records()
    by_seed = {s: [step_pairs(rows, states, 0.1, 2, s) for _ in range(2)] for s in range(6)}
    assert all(a == b for a, b in by_seed.values())
    assert len({tuple(names(v[0])) for v in by_seed.values()}) > 1  # the sample moves with it
    traj = trajectory_records()
    assert trajectory_pairs(traj, 3, 0) == trajectory_pairs(traj, 3, 0)


def trajectory_records() -> list[dict]:
    """Bargaining: episodes 0, 1 won by alice (lost by bob), 2, 3 lost by alice, 4 a tie."""
    rows = []
    for e, alice in enumerate([1.0, 1.0, 0.0, 0.0, 0.5]):
        for turn in (1, 2):
            rows.append(record(episode=e, player="alice", turn=turn, action=f"a{e}{turn}",
                               episode_reward=alice))
            rows.append(record(episode=e, player="bob", turn=turn, action=f"b{e}{turn}",
                               episode_reward=1.0 - alice if alice != 0.5 else 0.5))
    rows.append(record(game="negotiation", episode=9, player="alice", turn=1, action="n",
                       episode_reward=1.0))  # no lost negotiation: no pair
    return rows


def test_trajectory_pairs_align_won_and_lost_turns_of_one_role():
    pairs = trajectory_pairs(trajectory_records(), limit=None, seed=0)
    assert len(pairs) == 2 * 2 * 2  # per role: 2 won x 2 lost paired one to one, 2 turns each
    for chosen, rejected in pairs:
        assert chosen["episode_reward"] == 1.0 and rejected["episode_reward"] == 0.0
        assert chosen["game"] == rejected["game"] == "bargaining"
        assert chosen["player"] == rejected["player"] and chosen["turn"] == rejected["turn"]
    used = {(c["player"], c["episode_id"], r["episode_id"]) for c, r in pairs}
    assert len(used) == 4  # each won episode met one lost one, every episode used


def test_no_pair_stops_with_the_reason(tiny_model_dir, tmp_path):
    rows, states = step_records()
    with pytest.raises(NothingToLearn, match="differ by more than dpo.margin 0.95"):
        train_dpo({"bargaining": rows}, "step", dpo_config(margin=0.95), lora(),
                  str(tiny_model_dir), tmp_path / "out", tmp_path / "work",
                  states_by_game={"bargaining": states}, progress=False)
    with pytest.raises(NothingToLearn, match="won and a lost episode"):
        train_dpo({"bargaining": rows}, "trajectory", dpo_config(), lora(), str(tiny_model_dir),
                  tmp_path / "out", tmp_path / "work", progress=False)


# --- a real run ----------------------------------------------------------------------------

def test_a_short_run_changes_the_adapter_and_reruns_identically(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    records = {"bargaining": trajectory_records()}
    cfg = dpo_config(lr=1e-2, batch_size=4, max_pairs_per_game=8)
    runs = []
    for name in ("a", "b"):
        metrics = train_dpo(records, "trajectory", cfg, lora(), str(tiny_model_dir),
                            tmp_path / name, tmp_path / f"work-{name}", seed=3, progress=False)
        runs.append((metrics, load_file(tmp_path / name / "adapter_model.safetensors")))
        assert not (tmp_path / f"work-{name}").exists()
    (metrics, weights), (metrics_b, weights_b) = runs
    assert metrics["pairs"] == 8 and metrics["steps"] == 2
    assert metrics["loss_first"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().max() > 0 for w in lora_b)  # trained away from B = 0
    assert weights.keys() == weights_b.keys()
    assert all(torch.equal(weights[k], weights_b[k]) for k in weights)
    assert {k: v for k, v in metrics.items() if k != "seconds"} == \
        {k: v for k, v in metrics_b.items() if k != "seconds"}


def test_build_pairs_samples_each_game_apart():
    rows = trajectory_records()
    pairs = build_pairs("trajectory", {"bargaining": rows, "negotiation": [rows[-1]]},
                        dpo_config(max_pairs_per_game=3), seed=0)
    assert [len(pairs["bargaining"]), len(pairs["negotiation"])] == [3, 0]
