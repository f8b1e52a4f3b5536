"""LLM oracle (docs/method.md §4, optional): a configured causal LM answers, prompted with the
target's facts.

Same interface as :class:`src.oracles.kb.KBOracle`. Meant for a GPU and a strong instruct model;
whatever the model writes is post-filtered so the game's rules hold: Twenty Questions answers
become exactly "Yes." / "No." / "I don't know."; Guess My City answers are cut to one short
sentence and never name the city (a name is replaced, and a reply that still names it becomes
"I don't know.").
"""
from __future__ import annotations

import re

from src.oracles.kb import Answer, BatchedOracle, KnowledgeBase, first_question

MAX_ANSWER_WORDS = 25
PROMPTS = {
    "objects": ("You are the answerer in a game of 20 Questions. The hidden object is: {name}. "
                "Facts: {facts}. Answer the player's question about it with Yes, No or I don't know."),
    "cities": ("You are the answerer in a city guessing game. The hidden city is: {name}. "
               "Facts: {facts}. Answer the player's question in one short sentence. "
               "Never say the city's name."),
}


class LLMOracle(BatchedOracle):
    def __init__(self, kb: KnowledgeBase, model: str, device: str = "auto",
                 max_new_tokens: int = 32, policy=None):
        from src.policy.policy import Policy
        from src.policy.sampling import SamplingConfig

        self.kb = kb
        self.policy = policy or Policy.load(model, device=device, name=model)
        self.sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens,
                                       batch_size=16, prefix_cache_gb=4.0)
        self._primed: dict[tuple[str, str], Answer] = {}

    def messages(self, target: str, question: str) -> list[dict]:
        system = PROMPTS[self.kb.domain].format(name=target, facts=self.kb.describe(target))
        return [{"role": "system", "content": system},
                {"role": "user", "content": first_question(question)}]

    def answer(self, target: str, question: str) -> Answer:
        guess = self.kb.guess_answer(target, question)
        if guess is not None:
            return guess
        if (target, question) not in self._primed:
            self.prime([(target, question)])
        return self._primed.pop((target, question))

    def prime(self, items: list[tuple[str, str]]) -> None:
        """One batched generate for every pair not answered yet (outright guesses of another
        target get "No" in :meth:`answer`, without the model)."""
        todo = [item for item in dict.fromkeys(items)
                if item not in self._primed and self.kb.guess_answer(*item) is None]
        if todo:
            replies = self.policy.generate([self.messages(t, q) for t, q in todo], self.sampling, seed=0)
            self._primed.update({item: self.clean(item[0], reply) for item, reply in zip(todo, replies)})

    def clean(self, target: str, reply: str) -> Answer:
        if self.kb.domain == "objects":
            first = re.match(r"\W*(\w+)", reply.lower())
            word = first.group(1) if first else ""
            label = word if word in ("yes", "no") else "unknown"
            text = {"yes": "Yes.", "no": "No.", "unknown": self.kb.unknown.text}[label]
            return Answer(text, {"answer": label, "attribute": None})
        sentence = re.match(r"\s*(.*?[.!?])(?:\s|$)", reply)
        text = " ".join((sentence.group(1) if sentence else reply).split()[:MAX_ANSWER_WORDS])
        for spelling in sorted(self.kb.entries[target].spellings, key=len, reverse=True):
            text = re.sub(rf"\b{re.escape(spelling)}\b", "this city", text, flags=re.I)
        if not text or self.kb.named_in(text, target):
            return self.kb.unknown
        return Answer(text, {"answer": "fact", "attribute": None})
