"""The prefix cache: reusing a conversation's key/values from its previous turn changes no
greedy reply, and really skips the prefill of the reused tokens."""
import torch

from src.config import defaults
from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig, make_game
from src.policy.policy import GenerationStats
from src.policy.prefix_cache import PrefixCache
from src.policy.sampling import SamplingConfig
from src.rollout.play import play

GAMES = defaults(GamesConfig, "games",
                 bargaining=TwoPlayerConfig(max_rounds=4),  # tiny model: passes; 2 moves each
                 twenty_questions=QuestionsConfig(max_turns=3, candidates=0))


def greedy(prefix_cache: bool) -> SamplingConfig:
    return defaults(SamplingConfig, "rollout.sampling", temperature=0, max_new_tokens=6,
                    batch_size=3, prefix_cache_gb=1.0 if prefix_cache else 0.0)


def chat(*user_turns: str) -> list[dict]:
    messages = [{"role": "system", "content": "Ask short questions about a hidden object."}]
    for i, text in enumerate(user_turns):
        if i:
            messages.append({"role": "assistant", "content": f"Question {i}?"})
        messages.append({"role": "user", "content": text})
    return messages


def test_lookup_is_decided_by_tokens_not_keys():
    cache = PrefixCache(max_bytes=1 << 20)
    cache.store("a", [1, 2, 3, 4], [(torch.zeros(2, 4, 8), torch.zeros(2, 4, 8))])
    assert cache.lookup("a", [1, 2, 9, 9, 9])[0] == 2
    assert cache.lookup("a", [1, 2, 3, 4])[0] == 3  # one token is always left to compute logits
    assert cache.lookup("b", [1, 2, 3])[0] == 0
    cache.forget(["a", "missing"])
    assert cache.entries == {} and cache.bytes == 0


def test_a_full_cache_stores_no_more_and_keeps_what_it_has():
    layer = (torch.zeros(2, 4, 8), torch.zeros(2, 4, 8))  # 512 bytes
    cache = PrefixCache(max_bytes=1000)
    cache.store("a", [1, 2, 3, 4], [layer])
    cache.store("b", [5, 6, 7, 8], [layer])
    assert list(cache.entries) == ["a"] and cache.bytes == 512
    cache.store("a", [1, 2, 3, 4, 5], [layer])  # replacing an entry frees its old size first
    assert list(cache.entries) == ["a"] and cache.bytes == 512


def test_cached_turns_give_the_same_greedy_replies(tiny_policy):
    turns = [[chat("Start."), chat("Start!"), chat("Begin now, please.")],
             [chat("Start.", "No."), chat("Start!", "Yes, it is alive."), chat("Begin now, please.", "Maybe.")]]
    keys = ["x", "y", "z"]
    cache = PrefixCache(max_bytes=1 << 30)
    tiny_policy.stats = GenerationStats()
    cached = [tiny_policy.generate(t, greedy(True), seed=0, cache=cache, keys=keys) for t in turns]
    reused = tiny_policy.stats.reused_prompt_tokens
    plain = [tiny_policy.generate(t, greedy(False), seed=0) for t in turns]
    assert cached == plain
    first_turn_tokens = sum(len(tiny_policy.chat.prompt_ids(c)) for c in turns[0])
    assert reused >= first_turn_tokens - 3 * 8  # all but the previous last user message and prompt
    assert set(cache.entries) == set(keys)


def test_play_with_and_without_the_cache_agree(tiny_policy):
    for name in ("bargaining", "twenty_questions"):
        records, reused = [], []
        for prefix_cache in (True, False):
            games = [make_game(name, GAMES) for _ in range(3)]
            for seed, game in enumerate(games):
                game.reset(seed)
            tiny_policy.stats = GenerationStats()
            play(games, [{p: tiny_policy for p in g.players} for g in games], greedy(prefix_cache), seed=0)
            records.append([[t.text for t in g.turns] for g in games])
            reused.append(tiny_policy.stats.reused_prompt_tokens)
        assert records[0] == records[1]
        assert reused[0] > reused[1]  # without the cache only a common opening is shared


def test_sliding_window_models_prefill_in_full(tiny_policy, monkeypatch):
    monkeypatch.setitem(tiny_policy.__dict__, "reuses_prefixes", False)
    cache = PrefixCache(max_bytes=1 << 30)
    conversations = [chat("Start.")]
    tiny_policy.generate(conversations, greedy(True), seed=0, cache=cache, keys=["x"])
    assert cache.entries == {}


def test_a_common_start_is_prefilled_once_with_the_same_replies(tiny_policy):
    rules = "You ask yes/no questions to find a hidden object; ask one short question per turn. " * 2
    conversations = [[{"role": "system", "content": rules}, {"role": "user", "content": text}]
                     for text in ("Ask your first question.", "Ask a question.", "Go.")]
    tiny_policy.stats = GenerationStats()
    batched = tiny_policy.generate(conversations, greedy(False), seed=0)
    shared = tiny_policy.stats.reused_prompt_tokens
    single = [tiny_policy.generate([c], greedy(False), seed=0)[0] for c in conversations]
    assert batched == single
    rules_tokens = len(tiny_policy.chat.prompt_ids(conversations[0][:1])) - 3  # without the turn markers
    assert shared >= 2 * rules_tokens  # computed once for three rows
