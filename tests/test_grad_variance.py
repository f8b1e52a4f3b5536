"""Gradient variance (docs/method.md §13): the Gram-matrix spread, per-record gradients on the
tiny random Llama, and the cluster bootstrap of the aggregated/raw ratio."""
import numpy as np
import pytest
import torch

from src.config import defaults
from src.training.grad_variance import (GradVarianceConfig, centred, episode_resamples,
                                        gradient_variance, gram_matrix, minibatch_variance,
                                        per_record_gradients, ratio_with_interval,
                                        weighted_spread)
from src.training.reinforce import (LoraSettings, action_log_probs, build_trainable_model,
                                    collate, encode_records, trainable_parameters)
from synthetic_records import records_by_game

CFG = defaults(GradVarianceConfig, "grad_variance", records=8, batch_size=3, rows_per_pass=3,
               bootstrap=200)
LORA = defaults(LoraSettings, "train.lora")


def direct_spread(g: np.ndarray, w: np.ndarray, c: np.ndarray) -> float:
    """sigma^2 straight from the vectors: each record repeated c_j times."""
    rows = np.repeat(w[:, None] * g, c.astype(int), axis=0)
    return float(((rows - rows.mean(axis=0)) ** 2).sum(axis=1).mean())


def test_gram_spread_equals_direct_computation():
    rng = np.random.default_rng(0)
    g, w = rng.normal(size=(7, 50)), rng.uniform(size=7)
    gram = gram_matrix(torch.from_numpy(g).float(), chunk=16)  # chunks must add up
    assert gram == pytest.approx(g.astype(np.float32).astype(np.float64)
                                 @ g.astype(np.float32).astype(np.float64).T)
    counts = np.array([np.ones(7), [0, 2, 1, 0, 3, 1, 1]])
    for c in counts:
        assert weighted_spread(gram, w, c)[0] == pytest.approx(direct_spread(g, w, c), rel=1e-5)
        b = (c * w).sum() / c.sum()
        assert weighted_spread(gram, w - b, c)[0] == pytest.approx(
            direct_spread(g, w - b, c), rel=1e-5)
    # per-resample baselines, vectorised, match the one-at-a-time values
    batched = weighted_spread(gram, centred(w, counts), counts)
    assert batched == pytest.approx([direct_spread(g, w - (c * w).sum() / c.sum(), c)
                                     for c in counts], rel=1e-5)


def test_minibatch_variance_matches_enumeration():
    """(N-B)/(N-1) sigma^2 / B is the exact variance of a without-replacement minibatch mean."""
    from itertools import combinations

    rng = np.random.default_rng(1)
    v = rng.normal(size=(6, 3))
    sigma2 = float(((v - v.mean(0)) ** 2).sum(1).mean())
    means = np.array([v[list(idx)].mean(0) for idx in combinations(range(6), 4)])
    exact = float(((means - means.mean(0)) ** 2).sum(1).mean())
    assert minibatch_variance(sigma2, 6, 4) == pytest.approx(exact)


def tiny_setup(tiny_model_dir, records):
    model, tokenizer = build_trainable_model(str(tiny_model_dir), "float32", LORA, 0)
    model.eval()
    return model, tokenizer, encode_records(records, tokenizer)


def test_per_record_gradients_sum_to_the_batch_gradient(tiny_model_dir):
    records = records_by_game(5)["bargaining"]
    model, tokenizer, encoded = tiny_setup(tiny_model_dir, records)
    params = list(trainable_parameters(model).values())
    batch = collate(encoded, tokenizer.pad_token_id)
    total = torch.autograd.grad(action_log_probs(model, batch).sum(), params)
    total = torch.cat([t.reshape(-1) for t in total])
    hooked = per_record_gradients(model, encoded, tokenizer.pad_token_id, rows_per_pass=3)
    looped = per_record_gradients(model, encoded, tokenizer.pad_token_id, use_hooks=False)
    assert hooked.shape == (len(records), total.numel())
    assert torch.allclose(hooked.sum(0), total, rtol=1e-4, atol=1e-6)
    assert torch.allclose(hooked, looped, rtol=1e-3, atol=1e-6)  # and each row on its own
    assert (hooked.norm(dim=1) > 0).all()


def test_equal_rewards_give_ratio_one(tiny_model_dir):
    records = [dict(r, raw_reward=r["reward"]) for r in records_by_game(8)["negotiation"]]
    metrics = gradient_variance(records, CFG, LORA, base=str(tiny_model_dir),
                                device="cpu")
    assert metrics["records"] == 8 and metrics["episodes"] == 8
    assert metrics["records_tokenised_from_text"] == 8  # synthetic records have text only
    for key in ("no_baseline", "constant_baseline"):
        part = metrics[key]
        assert part["sigma2"]["raw"] > 0
        assert part["ratio"] == pytest.approx(1.0)
        low, high = part["interval"]
        assert low <= 1.0 + 1e-9 and high >= 1.0 - 1e-9
        assert part["minibatch_variance"]["raw"] == pytest.approx(
            5 / 7 * part["sigma2"]["raw"] / 3)


def test_no_reward_signal_gives_null_ratio_and_a_note(tiny_model_dir):
    records = [dict(r, raw_reward=0.0, reward=0.0) for r in records_by_game(4)["guess_my_city"]]
    metrics = gradient_variance(records, CFG, LORA, base=str(tiny_model_dir))
    assert metrics["no_baseline"] is None and "no reward signal" in metrics["note"]


def synthetic_game(episodes: int, rng, dim: int = 20):
    """Per-record gradients and rewards with episode structure: an episode's records share part
    of their gradient and its outcome; aggregation shrinks the raw reward towards its mean."""
    per_episode = rng.integers(2, 6, size=episodes)
    ids = np.repeat(np.arange(episodes), per_episode)
    shared = rng.normal(size=(episodes, dim))[ids]
    g = 0.7 * shared + rng.normal(size=(len(ids), dim)) + 0.5
    outcome = rng.uniform(size=episodes)[ids] < 0.4
    raw = outcome * rng.uniform(0.6, 1.0, size=len(ids))
    aggregated = 0.3 * raw + 0.7 * raw.mean() + 0.1 * rng.uniform(size=len(ids))
    return g, {"aggregated": aggregated, "raw": raw}, [str(i) for i in ids]


def test_cluster_bootstrap_interval_covers_the_truth():
    """Over repeated samples of 40 episodes, the 95 % interval holds the ratio of a large
    population most of the time (a percentile bootstrap with few clusters: >= 85 % asked)."""
    rng = np.random.default_rng(0)
    g, weights, ids = synthetic_game(20000, rng)
    truth = {}
    for baseline in (False, True):
        s = {}
        for kind, w in weights.items():
            wc = w - w.mean() if baseline else w
            rows = wc[:, None] * g
            s[kind] = float(((rows - rows.mean(0)) ** 2).sum(1).mean())
        truth[baseline] = s["aggregated"] / s["raw"]
    covered = {False: 0, True: 0}
    trials = 60
    for t in range(trials):
        g_s, w_s, ids_s = synthetic_game(40, np.random.default_rng(100 + t))
        gram = g_s @ g_s.T
        counts = episode_resamples(ids_s, 400, seed=t)
        for baseline in (False, True):
            low, high = ratio_with_interval(gram, w_s, counts, baseline, 4)["interval"]
            covered[baseline] += low <= truth[baseline] <= high
    assert covered[False] / trials >= 0.85 and covered[True] / trials >= 0.85
    assert truth[True] < truth[False] < 1  # the synthetic aggregation lowers the spread


def test_stratified_resamples_keep_every_rewarded_episode_count():
    """Few rewarded episodes: an unstratified resample often draws none (raw sigma^2 = 0, no
    ratio); stratified, every resample has as many as the sample, so none is dropped."""
    ids = [str(i) for i in range(20) for _ in range(2)]
    rewarded = np.array([i in (3, 11) for i in range(20) for _ in range(2)])
    plain = episode_resamples(ids, 500, seed=0)
    strata = episode_resamples(ids, 500, seed=0, rewarded=rewarded)
    assert ((plain * rewarded).sum(1) == 0).any()
    assert ((strata * rewarded).sum(1) == 4).all()  # 2 rewarded episodes x 2 records each
    assert (strata.sum(1) == 40).all()
    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 6))
    w = {"raw": rewarded * 1.0, "aggregated": rewarded * 0.5 + 0.05}
    assert ratio_with_interval(g @ g.T, w, strata, False, 4)["resamples_without_ratio"] == 0
    assert ratio_with_interval(g @ g.T, w, plain, False, 4)["share_without_ratio"] > 0


def test_support_counts_and_bf16_autocast(tiny_model_dir):
    """The metrics count the rewarded records and episodes the ratio rests on; bf16 autocast
    gives the fp32 ratio within a few per cent on the tiny model."""
    records = records_by_game(8)["bargaining"]
    records = [dict(r, raw_reward=float(i % 3 == 0), reward=0.4 + 0.1 * (i % 3 == 0))
               for i, r in enumerate(records)]
    fp32 = gradient_variance(records, CFG, LORA, base=str(tiny_model_dir), device="cpu")
    assert fp32["records_with_nonzero_weight"] == 3 and fp32["episodes_with_nonzero_weight"] == 3
    assert fp32["no_baseline"]["resamples_without_ratio"] == 0
    bf16 = gradient_variance(records, defaults(GradVarianceConfig, "grad_variance", records=8,
                                               batch_size=3, rows_per_pass=3, bootstrap=200,
                                               autocast="bf16"),
                             LORA, base=str(tiny_model_dir), device="cpu")
    assert bf16["no_baseline"]["ratio"] == pytest.approx(fp32["no_baseline"]["ratio"], rel=0.05)
