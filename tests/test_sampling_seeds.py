"""Per-episode sampling seeds: a sampled rollout is a function of its seeds alone, so the
batch size (and which episodes share a batch) does not change any episode."""
import dataclasses

import torch

from src.config import defaults
from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig
from src.policy.sampling import SamplingConfig
from src.rollout.play import RolloutConfig, self_play

# the tiny profile's games and sampling (profiles/tiny.yaml), sampled at temperature 1
TINY_GAMES = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=2),
                      twenty_questions=QuestionsConfig(max_turns=3, candidates=0))
SAMPLED = defaults(SamplingConfig, "rollout.sampling", temperature=1.0, top_p=0.95,
                   max_new_tokens=8, batch_size=4)
EPISODES = 16
# Differently padded batches round differently; a token flips only when a row's uniform draw
# falls within round-off of a CDF boundary (about 1e-7 of the mass). Stated tolerance: at most
# 1 episode in 16 (per game) may differ; on this model and these seeds none does.
MAX_DIFFERENT = 1


def rollout(policy, game: str, batch_size: int) -> list[dict]:
    cfg = defaults(RolloutConfig, "rollout", episodes=EPISODES, seed=0,
                   sampling=dataclasses.replace(SAMPLED, batch_size=batch_size))
    records, _ = self_play(game, TINY_GAMES, policy, cfg)
    return [{k: r[k] for k in ("episode_id", "turns", "outcome", "rewards")} for r in records]


def test_sampled_rollout_does_not_depend_on_batch_size(tiny_policy):
    for game in ("bargaining", "twenty_questions"):
        small, large = rollout(tiny_policy, game, 4), rollout(tiny_policy, game, 32)
        different = sum(a != b for a, b in zip(small, large))
        assert different <= MAX_DIFFERENT, (game, different)
        texts = [t["text"] for r in small for t in r["turns"] if t["speaker"] != "env"]
        assert len(set(texts)) > len(texts) // 4  # really sampled, not one greedy reply


def test_each_conversation_draws_from_its_own_seed(tiny_policy):
    conversations = [[{"role": "user", "content": f"Say something about {w}."}]
                     for w in ("cats", "rain", "tea", "maps", "ice")]
    sampling = dataclasses.replace(SAMPLED, top_p=1.0, batch_size=2)
    seeds = [11, 12, 13, 14, 15]
    together = tiny_policy.generate(conversations, sampling, seed=seeds)
    alone = [tiny_policy.generate([c], sampling, seed=[s])[0] for c, s in zip(conversations, seeds)]
    assert together == alone
    reversed_order = tiny_policy.generate(conversations[::-1], sampling, seed=seeds[::-1])
    assert reversed_order[::-1] == together
    assert tiny_policy.generate(conversations, sampling, seed=[s + 100 for s in seeds]) != together


def test_nucleus_inverse_cdf_keeps_the_top_p_set(tiny_policy):
    from src.policy.sampling import RowNoise, pick_tokens

    logits = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15]] * 4000))
    noise = RowNoise(range(4000))
    tokens = pick_tokens(logits, dataclasses.replace(SAMPLED, top_p=0.75), noise)
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[0] == 0 and counts[3] == 0  # 0.5 + 0.3 reaches 0.75: the rest is cut
    assert abs(counts[1] / 4000 - 0.5 / 0.8) < 0.03
    greedy = pick_tokens(logits, dataclasses.replace(SAMPLED, temperature=0.0), None)
    assert (greedy == 1).all()


def test_nucleus_from_the_top_candidates_equals_a_full_sort():
    """The nucleus from ``topk`` is the one a stable sort of the whole vocabulary gives, bit for
    bit, on peaked rows (the candidates hold top_p) and flat ones (they do not: full sort),
    alone and mixed in one batch."""
    from src.policy.sampling import NUCLEUS_CANDIDATES, nucleus

    def full_sort(probs, top_p):
        ranked, order = probs.sort(dim=-1, descending=True, stable=True)
        return probs.scatter(-1, order, ranked.masked_fill((ranked.cumsum(-1) - ranked) >= top_p, 0))

    torch.manual_seed(0)
    vocab = 4 * NUCLEUS_CANDIDATES
    peaked, flat = torch.randn(6, vocab) * 6, torch.randn(6, vocab) * 0.1
    for logits in (peaked, flat, torch.cat([peaked, flat])[torch.randperm(12)]):
        probs = torch.softmax(logits.double() / 0.8, dim=-1)
        for top_p in (0.3, 0.95, 1.0):
            kept = nucleus(probs, top_p)
            assert torch.equal(kept, full_sort(probs, top_p)), top_p
            assert (kept > 0).sum(-1).min() >= 1
