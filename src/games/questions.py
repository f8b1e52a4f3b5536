"""The single-agent question games (docs/method.md §3.3, §3.4, after LMRL-Gym), shared mechanics.

Each turn the agent asks one question. A question whose first question names the hidden target
and no other entry (whole words, any spelling: :meth:`KnowledgeBase.guesses_only`; a guess is one
object, so listing several wins nothing) wins at once; otherwise the oracle answers and
the answer is recorded as an ``env`` turn. A reply without any letter or digit is an invalid
question: it uses up the turn and gets "I don't know.". At most ``max_turns`` questions.
Rewards: 1 if solved else 0 (ARIA); the LMRL-Gym env reward (-1 per question, 0 for the
winning one) is kept in each agent move and summed in ``outcome.env_return``.

Difficulty: with ``candidates`` = C > 0 the setup also draws C - 1 other entries, and the prompt
lists the C names (shuffled) the target is among, repeated in each turn's instruction with the
guess format "Is it <one of them>?". There is no example guess: SmolLM2-135M repeated any
example verbatim (0 of 16 solved with one, on validation seeds). C = 0 is the paper's game: the
whole knowledge base, no list, and the example question.

True intentions (``Turn.intention``, :func:`intentions`): ``guess`` when the first question names
exactly one knowledge-base entry (the win rule's test, right or wrong, listed or not);
otherwise, with the KB oracle, ``ask:<attribute>`` of the attribute question it matched
(``ask:_open`` for open questions it cannot answer, ``ask:unmatched`` below its similarity
floor); with an LLM oracle (``llm``, ``openai``), which matches no attribute, just ``ask``; a
reply that is no question ``invalid``.
"""
from __future__ import annotations

import random
from typing import ClassVar

from src.games.base import Turn
from src.games.common import INVALID, TextGame, clip_words
from src.oracles.kb import KBOracle, KnowledgeBase, first_question, normalize

GUESS, ASK, ASK_UNMATCHED = "guess", "ask", "ask:unmatched"


def intentions(kb: KnowledgeBase) -> tuple[str, ...]:
    """The agent's intention labels in a game on ``kb``: one ``ask:<attribute>`` per attribute."""
    attributes = dict.fromkeys(q.attribute for q in kb.questions)  # KB order, no duplicates
    return (*(f"{ASK}:{a}" for a in attributes), ASK_UNMATCHED, ASK, GUESS, INVALID)


class QuestionGame(TextGame):
    players = ("agent",)
    domain: ClassVar[str]  # knowledge base: "objects" | "cities"
    target_key: ClassVar[str]  # setup field holding the hidden target
    rules: ClassVar[str]  # system prompt; {turns} = max_turns
    example: ClassVar[str]  # a sample question, shown in the first user message
    kind: ClassVar[str]  # what the target is, for the candidate list: "objects" | "cities"

    def __init__(self, oracle, max_turns: int = 20, candidates: int = 0):
        super().__init__()
        self.oracle, self.kb, self.max_turns, self.candidates = oracle, oracle.kb, max_turns, candidates
        if not 0 <= candidates <= len(self.kb.names) - 1:
            raise ValueError(f"{self.name}: candidates must be in [0, {len(self.kb.names) - 1}]")

    @classmethod
    def from_config(cls, cfg, oracle=None):
        from src.oracles import get_oracle

        own = getattr(cfg, cls.name)
        return cls(oracle or get_oracle(cls.domain, cfg.oracle), own.max_turns, own.candidates)

    def sample_setup(self, rng: random.Random) -> dict:
        target = rng.choice(self.kb.names)
        setup = {self.target_key: target, "max_turns": self.max_turns}
        if self.candidates:
            listed = [target, *rng.sample([n for n in self.kb.names if n != target],
                                          self.candidates - 1)]
            rng.shuffle(listed)
            setup["candidates"] = listed
        return setup

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
        rules = self.rules.format(turns=self.setup["max_turns"])
        if "candidates" not in self.setup:
            return rules
        return (f"{rules}\nIt is one of these {len(self.setup['candidates'])} {self.kind}: "
                f"{self.listed()}.\nTo guess, ask \"Is it <one name from the list>?\"")

    def listed(self) -> str:
        return "; ".join(self.setup["candidates"])

    def now_prompt(self, brief: bool = False) -> str:
        """The instruction for this turn. With a candidate list the full form repeats it (a small
        model reads the last message best); the brief form kept in the history does not."""
        if self.asked == 0:
            now = "Now ask your first question."
        else:
            now = "Ask your last question." if self.asked + 1 == self.setup["max_turns"] else "Ask your next question."
        if "candidates" not in self.setup:  # the paper's game keeps its example in the history
            return f"Example question: {self.example}\n{now}" if self.asked == 0 else now
        return now if brief else f"It is one of: {self.listed()}.\n{now} Reply: Is it <one of them>?"

    @classmethod
    def prepare(cls, games: list["QuestionGame"], texts: list[str]) -> None:
        """Prime each oracle with the step's questions it will answer (one embedder or model
        call per step instead of one per episode)."""
        by_oracle: dict[int, list] = {}
        for game, text in zip(games, texts):
            if game.answered(text):
                by_oracle.setdefault(id(game.oracle), [game.oracle, []])[1].append(
                    (game.setup[game.target_key], text))
        for oracle, items in by_oracle.values():
            oracle.prime(items)

    @staticmethod
    def is_question(text: str) -> bool:
        return bool(normalize(first_question(text)))

    def answered(self, text: str) -> bool:
        """Whether the oracle answers ``text``: a question that is not a winning guess."""
        return self.is_question(text) and not self.kb.guesses_only(text, self.setup[self.target_key])

    def play(self, player: str, text: str, messages: list[dict]) -> None:
        target = self.setup[self.target_key]
        self.asked += 1
        valid = self.is_question(text)
        if valid and self.kb.guesses_only(text, target):
            self.add_turn(player, text, {"env_reward": 0}, messages, intention=GUESS)
            self.end(solved=True)
            return
        self.add_turn(player, text, {"env_reward": -1}, messages, valid=valid,
                      intention=self.intention(text) if valid else None)
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

    def intention(self, text: str) -> str:
        """The label of a valid question that did not win (see the module docstring)."""
        if len(self.kb.named_entries(first_question(text))) == 1:
            return GUESS
        if not isinstance(self.oracle, KBOracle):
            return ASK
        matched, _ = self.oracle.match(text)
        return f"{ASK}:{matched.attribute}" if matched else ASK_UNMATCHED

    def end(self, solved: bool) -> None:
        self.finish({"solved": solved, "turns": self.asked,
                     "env_return": -(self.asked - 1) if solved else -self.asked},
                    {"agent": float(solved)})
