"""Policy tokenisation and batched generation on the tiny random Llama."""
from src.config import defaults
from src.policy.sampling import SamplingConfig

CONVERSATIONS = [
    [{"role": "system", "content": "Play a game."}, {"role": "user", "content": "Ask a question."}],
    [{"role": "user", "content": "Offer: Alice gets 60, Bob gets 40. Accept or reject?"}],
    [{"role": "user", "content": "Hi"}],
]


def test_encode_uses_the_generation_prompt(tiny_policy):
    messages = CONVERSATIONS[0]
    ids, start = tiny_policy.chat.encode(messages, "Is it alive?")
    assert ids[:start] == tiny_policy.chat.prompt_ids(messages)
    assert tiny_policy.tokenizer.decode(ids[start:-1]) == "Is it alive?"
    assert ids[-1] in tiny_policy.chat.end_ids


def test_greedy_batched_equals_one_at_a_time(tiny_policy):
    greedy = defaults(SamplingConfig, "rollout.sampling", temperature=0, max_new_tokens=8, batch_size=8)
    batched = tiny_policy.generate(CONVERSATIONS, greedy, seed=0)
    single = [tiny_policy.generate([c], greedy, seed=0)[0] for c in CONVERSATIONS]
    assert batched == single
    assert all(isinstance(r, str) for r in batched)


def test_sampling_is_seeded(tiny_policy):
    sampling = defaults(SamplingConfig, "rollout.sampling", temperature=1.0, max_new_tokens=8,
                        batch_size=2)
    first = tiny_policy.generate(CONVERSATIONS, sampling, seed=3)
    assert first == tiny_policy.generate(CONVERSATIONS, sampling, seed=3)
    assert tiny_policy.stats.prompts >= 6 and tiny_policy.stats.generated_tokens > 0
