"""The single-agent question games (SPEC 3.3, 3.4, after LMRL-Gym), shared mechanics.

Each turn the agent asks one question. A question that names the hidden target (whole words,
any spelling: :meth:`KnowledgeBase.named_in`) wins at once; otherwise the oracle answers and
the answer is recorded as an ``env`` turn. A reply without any letter or digit is an invalid
question: it uses up the turn and gets "I don't know.". At most ``max_turns`` questions.
Rewards: 1 if solved else 0 (ARIA); the LMRL-Gym env reward (-1 per question, 0 for the
winning one) is kept in each agent move and summed in ``outcome.env_return``.
"""
from __future__ import annotations

import random
from typing import ClassVar

from src.games.base import Turn
from src.games.common import TextGame, clip_words
from src.oracles.kb import first_question, normalize


class QuestionGame(TextGame):
    players = ("agent",)
    domain: ClassVar[str]  # knowledge base: "objects" | "cities"
    target_key: ClassVar[str]  # setup field holding the hidden target
    rules: ClassVar[str]  # system prompt; {turns} = max_turns
    example: ClassVar[str]  # a sample question, shown in the first user message

    def __init__(self, oracle, max_turns: int = 20):
        super().__init__()
        self.oracle, self.kb, self.max_turns = oracle, oracle.kb, max_turns

    @classmethod
    def from_config(cls, cfg, oracle=None):
        from src.oracles import get_oracle

        return cls(oracle or get_oracle(cls.domain, cfg.oracle), getattr(cfg, cls.name).max_turns)

    def sample_setup(self, rng: random.Random) -> dict:
        return {self.target_key: rng.choice(self.kb.names), "max_turns": self.max_turns}

    def on_start(self) -> None:
        super().on_start()
        self.setup.setdefault("max_turns", self.max_turns)
        if self.setup[self.target_key] not in self.kb.entries:
            raise ValueError(f"{self.name}: unknown {self.target_key} '{self.setup[self.target_key]}'")
        self.asked = 0

    @property
    def to_move(self) -> str:
        return "agent"

    def system_prompt(self) -> str:
        return self.rules.format(turns=self.setup["max_turns"])

    def now_prompt(self, brief: bool = False) -> str:  # the measured layout keeps the example
        if self.asked == 0:
            return f"Example question: {self.example}\nNow ask your first question."
        return "Ask your last question." if self.asked + 1 == self.setup["max_turns"] else "Ask your next question."

    def play(self, player: str, text: str, messages: list[dict]) -> None:
        target = self.setup[self.target_key]
        self.asked += 1
        valid = bool(normalize(first_question(text)))
        if valid and self.kb.named_in(text, target):
            self.add_turn(player, text, {"env_reward": 0}, messages)
            self.end(solved=True)
            return
        self.add_turn(player, text, {"env_reward": -1}, messages, valid=valid)
        answer = self.oracle.answer(target, text) if valid else self.kb.unknown
        self.turns.append(Turn("env", answer.text, True, answer.move))
        if valid:
            question = clip_words(first_question(text))
            self.note(question, by=player, own=question)
        else:
            self.note("(That was not a question.)", by=player)
        self.note(answer.text)
        if self.asked >= self.setup["max_turns"]:
            self.end(solved=False)

    def end(self, solved: bool) -> None:
        self.finish({"solved": solved, "turns": self.asked,
                     "env_return": -(self.asked - 1) if solved else -self.asked},
                    {"agent": float(solved)})
