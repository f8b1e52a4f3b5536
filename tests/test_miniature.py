"""The miniature policy (src/policy/miniature.py): its tokenizer round-trips every scripted
template and every prompt, its chat encoding is the one generation and training use, and
pretraining writes the same bytes on a rerun."""
import hashlib

import pytest

from src.config import defaults
from src.games import GamesConfig
from src.games.scripted import (DECISIONS, GUESSES, OPENERS, PRICES, SPLITS, ask_wordings,
                                guess_wordings, price_wordings, scripted_corpus, split_wordings)
from src.oracles.kb import load_kb
from src.policy.chat import ChatFormat
from src.policy.miniature import MiniatureConfig, encoded_examples, pretrain, train_tokenizer

CFG = defaults(GamesConfig, "games")
SMALL = defaults(MiniatureConfig, "miniature", episodes_per_game=3, vocab_size=600, hidden_size=32,
                 layers=2, heads=2, intermediate_size=64, steps=3, batch_size=4)


class NoOracle:
    """Answers "No." (no embedder): the corpus only needs the games' prompts here."""

    def __init__(self, domain):
        from src.oracles.kb import Answer

        self.kb, self.answer_class = load_kb(domain), Answer

    def answer(self, target, question):
        return self.answer_class("No.", {"answer": "no", "attribute": None})


@pytest.fixture(scope="module")
def corpus():
    return scripted_corpus(CFG, list(CFG.names), 3, SMALL.seed,
                           oracle_factory=lambda name: NoOracle("objects" if name == "twenty_questions" else "cities"))


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus, SMALL.vocab_size)


def every_template() -> list[str]:
    texts = [t for options in DECISIONS.values() for t in options]
    texts += [t for total in (100, 10_000, 1_000_000) for me in ("alice", "bob")
              for own in (total // 10, total // 2, total * 9 // 10)
              for t in split_wordings(me, own, total)]
    texts += [t for price in (7, 120, 9_500) for t in price_wordings(price)]
    for domain in ("objects", "cities"):
        kb = load_kb(domain)
        texts += [t for wordings in ask_wordings(kb).values() for t in wordings]
        texts += [t for name in kb.names for t in guess_wordings(kb, name)]
    return texts


def test_tokenizer_round_trips_every_template_and_prompt(corpus, tokenizer):
    texts = every_template() + [m["content"] for row in corpus for m in row["messages"]]
    assert len(texts) > 5000 and SPLITS and PRICES and GUESSES and OPENERS
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in tokenizer("Zürich — ¿qué? 😀", add_special_tokens=False)["input_ids"]


def test_chat_encoding_is_the_policy_format(corpus, tokenizer):
    """A reply is scored exactly as generation produces it: prompt ids with the generation
    prompt, then the reply's tokens and the end-of-turn token the policy stops on."""
    row = corpus[0]
    chat = ChatFormat(tokenizer)
    [(ids, start)], too_long = encoded_examples([row], tokenizer, 10_000)
    assert too_long == 0 and ids[:start] == chat.prompt_ids(row["messages"])
    assert tokenizer.decode(ids[start:-1]) == row["text"] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")


def folder_digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_pretraining_is_byte_identical_on_rerun(corpus, tmp_path):
    digests = []
    for run in ("a", "b"):
        model, tokenizer, metrics = pretrain(SMALL, corpus, progress=False)
        model.save_pretrained(tmp_path / run)
        tokenizer.save_pretrained(tmp_path / run)
        digests.append(folder_digest(tmp_path / run))
        assert metrics["corpus_rows"] == len(corpus) and metrics["final_loss"] > 0
    assert digests[0] == digests[1]
    other = pretrain(defaults(MiniatureConfig, "miniature", **{**vars(SMALL), "seed": SMALL.seed + 1}),
                     corpus, progress=False)[0]
    other.save_pretrained(tmp_path / "c")
    assert folder_digest(tmp_path / "c")["model.safetensors"] != digests[0]["model.safetensors"]
