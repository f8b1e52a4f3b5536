"""Knowledge bases of the single-agent games and the offline knowledge-base oracle
(docs/method.md §4).

``data/kb/objects.json`` (Twenty Questions) and ``data/kb/cities.json`` (Guess My City) hold, per
target, its accepted spellings and a fact table, plus a list of *attribute questions* (several
phrasings per attribute). :class:`KBOracle` embeds the asked question, picks the nearest
attribute question by cosine similarity (below ``similarity_floor``: "I don't know.") and
answers from the fact table: "Yes." / "No." / "I don't know." for objects, one short sentence
built from a template for cities (never the city's name; ``tests/test_oracles.py`` checks every
sentence of every city).

Name matching lives here because the KB owns the spellings: a text *names* a target when a
spelling appears as whole words after :func:`normalize` (case, accents and punctuation
ignored; "teddy-bear" = "Teddy Bear"), with an optional plural "s"/"es" on the last word
("Is it a dogs?" names the dog; "climate" never names Lima).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from src.intention.embedder import PACKAGED_EMBEDDER, embed

KB_DIR = Path(__file__).resolve().parents[2] / "data" / "kb"
MAX_CHARS = 1000  # a reply names a target only within its first characters
MAX_QUESTION_CHARS = 300  # the oracle reads the first question within these
OPEN = "_open"  # attribute of open questions a yes/no oracle cannot answer: "I don't know."
# Tuned on all-MiniLM-L6-v2: paraphrases of listed attribute questions score >= 0.64, small talk
# and unlisted properties ("Does it have a handle?", "Is it popular?") <= 0.56.
SIMILARITY_FLOOR = 0.6


def normalize(text: str) -> str:
    """ASCII lower-case words joined by single spaces: the form every name match uses."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("'", "")))


def names_pattern(spellings: list[str]) -> re.Pattern:
    """Whole-word match of any spelling (longest first) with an optional plural ending."""
    alternatives = sorted({normalize(s) for s in spellings}, key=len, reverse=True)
    return re.compile(r"(?:^| )(?:" + "|".join(map(re.escape, alternatives)) + r")(?:e?s)?(?= |$)")


def first_question(text: str) -> str:
    """The part of a reply the oracle answers: the first question, without a copied "Q3:" label."""
    text = re.sub(r"^\s*q(?:uestion)?\s*\d*\s*[:.)-]\s*", "", text[:MAX_QUESTION_CHARS], flags=re.I)
    match = re.match(r"[^?]*\?", text)
    return " ".join((match.group(0) if match else text).split())


# "is it a X", "could it be the X", "my guess is X", ... : a direct guess of the whole target.
_GUESS = re.compile(
    r"^(?:(?:so|ok|okay|then|hmm|well) )?"
    r"(?:(?:is it|is this|could it be|can it be|might it be|it is|its|is the (?:object|city|answer|thing)"
    r"|is your (?:object|city)|are you thinking of|i guess|my guess is|guess|the answer is) )?"
    r"(?:(?:in|at) )?(?:(?:a|an|the|some) )?(?P<name>.+)$")


class AttributeQuestion(NamedTuple):
    text: str
    attribute: str
    opposite: bool = False  # asks the inverse yes/no fact ("Is it smaller than a person?" vs "big")


@dataclass(frozen=True)
class Answer:
    """An oracle answer: the env turn's text and its parsed move."""
    text: str
    move: dict


@dataclass
class Entry:
    name: str  # canonical: "teddy bear", "Lima, Peru"
    spellings: list[str]
    facts: dict[str, Any]  # attribute -> True / False / value; None or missing = unknown
    pattern: re.Pattern = field(repr=False)


class KnowledgeBase:
    """Targets, their spellings and facts, and the attribute questions of one domain."""

    domain: str
    unknown = Answer("I don't know.", {"answer": "unknown", "attribute": None})

    def __init__(self, data: dict):
        self.questions = [AttributeQuestion(text, q["attribute"], opposite)
                          for q in data["questions"]
                          for opposite, key in ((False, "ask"), (True, "ask_opposite"))
                          for text in q.get(key, [])]
        self.entries: dict[str, Entry] = {}
        for raw in data["entries"]:
            self.entries[raw["name"]] = Entry(raw["name"], raw["spellings"], self.facts(raw, data),
                                              names_pattern(raw["spellings"]))
        self.names = list(self.entries)  # file order: setups draw from it by index
        self._by_spelling = {normalize(s): e.name for e in self.entries.values() for s in e.spellings}

    # -- domain specific ---------------------------------------------------------------
    def facts(self, raw: dict, data: dict) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, entry: Entry, attribute: str, value: Any) -> Answer:
        """The answer stating fact ``attribute`` = ``value`` (None: unknown) of ``entry``."""
        raise NotImplementedError

    def wrong_guess(self, guessed: Entry) -> Answer:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------
    def named_in(self, text: str, name: str) -> bool:
        """Does ``text`` name target ``name`` (whole words, any spelling)?"""
        return bool(self.entries[name].pattern.search(normalize(text[:MAX_CHARS])))

    def named_entries(self, text: str) -> set[str]:
        """Every entry ``text`` names. A longer name hides the shorter ones inside it ("teddy
        bear" names the teddy bear, not also a bear)."""
        text = normalize(text[:MAX_CHARS])
        spans = sorted(((m.start(), m.end(), name) for name, entry in self.entries.items()
                        for m in entry.pattern.finditer(text)),
                       key=lambda span: (span[0] - span[1], span[0]))
        taken: list[tuple[int, int]] = []
        named = set()
        for start, end, name in spans:
            if all(end <= a or start >= b for a, b in taken):
                taken.append((start, end))
                named.add(name)
        return named

    def guesses_only(self, question: str, name: str) -> bool:
        """Does the question name target ``name`` and no other entry? A guess must be one
        object: "Is it a pen, a cup or a dog?" wins nothing."""
        return self.named_entries(first_question(question)) == {name}

    def guessed(self, question: str) -> Entry | None:
        """The entry a question guesses outright ("Is it a dog?"), if any."""
        match = _GUESS.match(normalize(first_question(question)))
        if not match:
            return None
        name = match.group("name")
        for candidate in [name] + [name[:-len(end)] for end in ("es", "s") if name.endswith(end)]:
            if candidate in self._by_spelling:
                return self.entries[self._by_spelling[candidate]]
        return None

    def answer(self, name: str, attribute: str, opposite: bool = False) -> Answer:
        """The answer to an attribute question about target ``name``."""
        entry = self.entries[name]
        value = entry.facts.get(attribute)
        if opposite and isinstance(value, bool):
            value = not value
        return self.render(entry, attribute, value)

    def guess_answer(self, target: str, question: str) -> Answer | None:
        """"No" to an outright guess of another target (win checks run before the oracle)."""
        guessed = self.guessed(question)
        return self.wrong_guess(guessed) if guessed and guessed.name != target else None

    def describe(self, name: str) -> str:
        """The target's known facts as one compact line (for an LLM oracle's prompt)."""
        facts = self.entries[name].facts
        yes = [k for k, v in facts.items() if v is True]
        values = [f"{k}: {v}" for k, v in facts.items() if v not in (None, True, False)]
        no = [k for k, v in facts.items() if v is False]
        return "; ".join(values + [f"yes: {', '.join(yes)}"] + ([f"no: {', '.join(no)}"] if no else []))


class ObjectKB(KnowledgeBase):
    """Everyday objects; every attribute is a yes/no fact.

    An entry lists its category, size band, materials, colours (absent: colour questions are
    unknown) and the attributes that are true ("yes") or uncertain ("unsure"); ``implies``
    adds the attributes every member of a category or size band has. Everything else is "No".
    """
    domain = "objects"

    def facts(self, raw, data):
        attributes = sorted({q.attribute for q in self.questions} - {OPEN})  # sorted: stable prompts
        facts: dict[str, Any] = dict.fromkeys(attributes, False)
        category = data["implies"]["category"][raw["category"]]
        facts.update(dict.fromkeys(category.get("yes", []), True))
        facts.update(dict.fromkeys(category.get("unsure", []), None))
        facts.update(dict.fromkeys(data["implies"]["size"][raw["size"]], True))
        facts.update({f"made_of_{m}": True for m in raw["materials"]})
        if raw.get("colors") is None:
            facts.update({a: None for a in attributes if a.startswith("color_")})
        else:
            facts.update({f"color_{c}": True for c in raw["colors"]})
        facts.update(dict.fromkeys(raw.get("yes", []), True))
        facts.update(dict.fromkeys(raw.get("unsure", []), None))
        facts.update(category=raw["category"], size=raw["size"])
        return facts

    def render(self, entry, attribute, value):
        if value is None:
            return Answer(self.unknown.text, {"answer": "unknown", "attribute": attribute})
        label = "yes" if value else "no"
        return Answer(f"{label.capitalize()}.", {"answer": label, "attribute": attribute})

    def wrong_guess(self, guessed):
        return Answer("No.", {"answer": "no", "attribute": "guess"})


class CityKB(KnowledgeBase):
    """Large world cities; answers are one-sentence templates filled from the facts.

    A question's ``say`` template takes a value fact, ``yes`` / ``no`` a boolean one and
    ``none`` a null one. Country-level facts (continent, language, currency, sport) come from
    ``countries``; a city may override them. Hemisphere and latitude sentences are derived
    from the coordinates.
    """
    domain = "cities"

    def __init__(self, data):
        self.templates = {q["attribute"]: q for q in data["questions"]}
        super().__init__(data)

    def facts(self, raw, data):
        facts = {**data["countries"][raw["country"]], **raw}
        lat, lon = raw["lat"], raw["lon"]
        facts["hemispheres"] = (f"{'Northern' if lat >= 0 else 'Southern'} and "
                                f"{'Eastern' if lon >= 0 else 'Western'}")
        degrees = round(abs(lat))
        facts["latitude"] = ("almost on the equator" if degrees == 0 else
                             f"about {degrees} degrees {'north' if lat >= 0 else 'south'} of the equator")
        for key in ("name", "spellings"):
            facts.pop(key)
        return facts

    def render(self, entry, attribute, value):
        template = self.templates[attribute]
        if isinstance(value, bool):
            key, label = ("yes", "yes") if value else ("no", "no")
        else:
            key, label = ("say", "fact") if value is not None else ("none", "fact")
        if key not in template:
            return Answer(self.unknown.text, {"answer": "unknown", "attribute": attribute})
        return Answer(template[key].format(**entry.facts), {"answer": label, "attribute": attribute})

    def wrong_guess(self, guessed):
        return Answer(f"No, it is not {guessed.spellings[0]}.", {"answer": "no", "attribute": "guess"})


KB_CLASSES = {"objects": ObjectKB, "cities": CityKB}


@lru_cache(maxsize=None)
def load_kb(domain: str) -> KnowledgeBase:
    """The knowledge base of ``domain`` ("objects" | "cities"), loaded once per process."""
    if domain not in KB_CLASSES:
        raise ValueError(f"unknown knowledge base '{domain}'; known: {', '.join(KB_CLASSES)}")
    data = json.loads((KB_DIR / f"{domain}.json").read_text(encoding="utf-8"))
    return KB_CLASSES[domain](data)


class BatchedOracle:
    """An oracle answers one question at a time; :meth:`prime` lets it first do the model work
    for a whole lock-step step in one call (the rollout loop primes every pending question of a
    step before the games step), so that :meth:`answer` only looks the result up."""

    def prime(self, items: list[tuple[str, str]]) -> None:
        """Prepare the answers to these (target, question) pairs in one batch."""

    def answer(self, target: str, question: str) -> Answer:
        raise NotImplementedError

    def answer_many(self, items: list[tuple[str, str]]) -> list[Answer]:
        self.prime(items)
        return [self.answer(t, q) for t, q in items]


class KBOracle(BatchedOracle):
    """Answers by nearest attribute question (embedding cosine) and the fact table.

    Built once per process (``src.oracles.get_oracle``): the attribute-question embeddings are
    computed on first use and kept; question embeddings are cached too, so :meth:`prime` embeds
    a whole lock-step step's questions in one call.
    """
    CACHE_LIMIT = 50_000

    def __init__(self, kb: KnowledgeBase, embedder: str = PACKAGED_EMBEDDER,
                 similarity_floor: float = SIMILARITY_FLOOR):
        self.kb, self.embedder, self.similarity_floor = kb, embedder, similarity_floor
        self._attribute_vecs: np.ndarray | None = None
        self._cache: dict[str, np.ndarray] = {}

    def prime(self, items: list[tuple[str, str]]) -> None:
        """Embed every not-yet-seen question in one batch."""
        self._embed_questions([q for _, q in items])

    def _embed_questions(self, questions: list[str]) -> None:
        texts = sorted({first_question(q) for q in questions} - self._cache.keys())
        if len(self._cache) + len(texts) > self.CACHE_LIMIT:
            self._cache.clear()
        if texts:
            self._cache.update(zip(texts, embed(texts, self.embedder)))

    def match(self, question: str) -> tuple[AttributeQuestion | None, float]:
        """(nearest attribute question, its cosine similarity); None below the floor."""
        if self._attribute_vecs is None:
            self._attribute_vecs = embed([q.text for q in self.kb.questions], self.embedder)
        self._embed_questions([question])
        sims = self._attribute_vecs @ self._cache[first_question(question)]
        best = int(np.argmax(sims))
        return (self.kb.questions[best] if sims[best] >= self.similarity_floor else None), float(sims[best])

    def answer(self, target: str, question: str) -> Answer:
        guess = self.kb.guess_answer(target, question)
        if guess is not None:
            return guess
        matched, _ = self.match(question)
        if matched is None or matched.attribute == OPEN:
            return self.kb.unknown
        return self.kb.answer(target, matched.attribute, matched.opposite)
