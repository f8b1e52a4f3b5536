"""Scripted players of the miniature world: paraphrase-rich play of the real games, no strategy.

At each policy move the player draws an intention from a stated mixture (:data:`MIXTURES`, per
game and role) restricted to the moves legal in the state, then renders it with a random wording
and random round numbers (dollar amounts with thousands commas, percentages
where the game reads them). Every wording is one the game's own parser reads as the intended
move (``tests/test_scripted.py`` steps every template): after ``game.step(text)`` the game's
recorded ``Turn.intention`` is the drawn one, which :func:`scripted_episode` checks.

    rows = scripted_corpus(games_cfg, ["bargaining", "twenty_questions"], 100, seed=0)
    # [{"game", "messages", "text", "intention"}, ...], one row per policy move
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from src.games import Game, GamesConfig, make_game
from src.games.bargaining import OFFER_LEVELS as SPLIT_LEVELS
from src.games.bargaining import Bargaining
from src.games.bargaining import offer_level as split_level
from src.games.common import rival
from src.games.negotiation import OFFER_LEVELS as PRICE_LEVELS
from src.games.negotiation import Negotiation
from src.games.negotiation import offer_level as price_level
from src.games.questions import ASK, GUESS, QuestionGame
from src.oracles import Oracle
from src.oracles.kb import KBOracle, KnowledgeBase

# -- mixtures ----------------------------------------------------------------------------
# {game: {role: {intention: weight}}}; roles: bargaining proposer / responder, negotiation alice
# (seller) / bob (buyer), question games agent. A family key (``ask``, ``offer``) shares its weight
# evenly among that family's legal intentions (``ask:<attribute>``, ``offer:<level>``). Weights are
# renormalised over the moves legal in the state (accept / reject only when an offer stands).
MIXTURES: dict[str, dict[str, dict[str, float]]] = {
    "bargaining": {
        "proposer": {"offer:greedy": 0.25, "offer:high": 0.3, "offer:even": 0.3, "offer:low": 0.15},
        "responder": {"accept": 0.35, "reject": 0.65},
    },
    "negotiation": {
        "alice": {"offer:far_above": 0.2, "offer:above": 0.25, "offer:at": 0.1, "offer:below": 0.05,
                  "offer:far_below": 0.02, "accept": 0.2, "reject": 0.1, "walk": 0.03},
        "bob": {"offer:far_below": 0.2, "offer:below": 0.25, "offer:at": 0.1, "offer:above": 0.05,
                "offer:far_above": 0.02, "accept": 0.2, "reject": 0.1, "walk": 0.03},
    },
    "twenty_questions": {"agent": {"ask": 0.65, "guess": 0.35}},
    "guess_my_city": {"agent": {"ask": 0.65, "guess": 0.35}},
}

# -- wordings ----------------------------------------------------------------------------
# Decisions: the first decision word decides (a negated "refuse" is skipped, "don't accept"
# rejects); none names John or walks, and none holds a number (a negotiation offer would win).
ACCEPT = ("I accept.", "Yes, I accept.", "ACCEPT", "Deal, I accept.", "Agreed.", "I agree.", "Yes.",
          "Accepted.", "Sounds fair, I accept.", "Okay, I agree to that.", "Yes, deal.",
          "I won't refuse, I accept.", "Fine, I accept your offer.", "Yes, let's do it.",
          "That works for me, I accept.")
REJECT = ("I reject.", "No.", "REJECT", "No, I reject that.", "I decline.", "I refuse.", "Nope.",
          "No way.", "I don't accept that.", "I won't accept this.", "No, that is not fair.",
          "I can't agree to that.", "Rejected.", "No thanks.", "I reject your offer.")
WALK = ("WALK", "I walk away.", "I'm walking away.", "I'll deal with John instead.",
        "No deal, I'm walking.", "I walk; John gets my business.", "Forget it, I'll go to John.",
        "I'd rather deal with John.", "I'm done, I walk away.", "Walking away now.",
        "I choose to walk away.", "Let's stop here, I walk.")
DECISIONS = {"accept": ACCEPT, "reject": REJECT, "walk": WALK}

# Bargaining splits: parse_split gives each amount to the name right before it (within 30
# characters) or to "for/to <name>" right after it; "I" names nobody, so names are spelled out.
# One amount per offer, the other share implied ("the rest", which the parser computes): a
# 2-layer policy never has to make two amounts add up to the total (with both amounts named, 24 %
# of its offers did not).
SPLITS = (
    "{me} gets {mine}, the rest goes to {other}.",
    "I propose {me} gets {mine}.",
    "How about {mine} for {me}?",
    "My offer: {me} {mine}, {other} the rest.",
    "Let's split it: {me} takes {mine}.",
    "Offer: {mine} to {me}, the rest to {other}.",
    "I suggest {other} gets {theirs}.",
    "{other}: {theirs}. {me}: the rest.",
    "Fair split? {me} gets {mine}.",
    "I offer {other} {theirs}.",
    "Here is my offer: {theirs} for {other}.",
    "{me} keeps {mine}, the rest goes to {other}.",
    "I'll give {other} {theirs} and keep the rest.",
    "Split: {me} {mine}. Deal?",
    "Let me propose {mine} for {me}.",
    "{other} can have {theirs}; I keep the rest.",
    "What about {me} getting {mine}?",
    "{other} gets {theirs}, I keep the rest.",
)
# Negotiation offers: a price counts after an offer cue (OFFER, offer, propose, how about, price,
# pay, for, counter...) in any form, else only written with "$" ({dollars}).
PRICES = (
    "OFFER {price}", "I offer {price}.", "My offer is {price}.", "How about {price}?",
    "I propose {price}.", "Let's say {dollars}.", "{dollars}, final offer.", "Counteroffer: {price}.",
    "I can do {dollars}.", "What about {dollars}?", "My price is {price}.", "I'd go with {dollars}.",
    "Would you take {dollars}?", "I'd do it for {price}.", "Deal at {dollars}?", "I could pay {price}.",
)
# Question games: the knowledge base's attribute questions behind these openers (each pair
# checked to match its attribute on the packaged embedder), and guesses the KB reads as guesses.
OPENERS = ("", "Okay, ", "Hmm, ", "So, ", "Well, ", "Alright, ", "Tell me, ", "And ", "Interesting. ")
GUESSES = ("Is it {name}?", "Could it be {name}?", "Okay, is it {name}?", "Hmm, is it {name}?",
           "So is it {name}?", "Well, could it be {name}?", "Is this {name}?", "Might it be {name}?",
           "Are you thinking of {name}?", "Then is it {name}?", "Can it be {name}?",
           "My guess is {name}.", "Okay, could it be {name}?")

# Round amounts: the grid steps people use at each bargaining total / negotiation scale.
SPLIT_STEPS = {100: (1, 5, 10), 10_000: (100, 500, 1_000), 1_000_000: (10_000, 50_000, 100_000)}
PRICE_STEPS = {100: (1, 5, 10), 10_000: (50, 100, 500, 1_000)}
SHARE_RANGE = (0.1, 0.9)  # a scripted proposer keeps between 10 % and 90 % of the total
RATIO_RANGE = (0.5, 1.7)  # a scripted price lies between 0.5 and 1.7 times the mover's value


def amount_forms(x: int, total: int | None = None) -> dict[str, str]:
    """Ways the amount ``x`` (in dollars) is written, by style; ``total``: percentages too. Few
    number styles on purpose: the paraphrases live in the words around the amount, and a
    few-million-parameter policy learns three number formats far sooner than seven."""
    forms = {"money": f"${x:,}", "dollars": f"{x:,} dollars"}
    if total and x * 100 % total == 0:
        forms["percent"] = f"{x * 100 // total}%"
    return forms


# -- episodes ----------------------------------------------------------------------------
@dataclass
class ScriptedMove:
    messages: list[dict]  # the exact chat observation() the player saw
    text: str  # the scripted reply
    intention: str  # the intention it was rendered from, as the game recorded it


def role(game: Game) -> str:
    """The mover's role, the key of its mixture in :data:`MIXTURES`."""
    if isinstance(game, Bargaining):
        return "proposer" if game.offer is None else "responder"
    return game.to_move


def legal(game: Game) -> list[str]:
    """The intentions the mover can play now, in a fixed order."""
    if isinstance(game, Bargaining):
        if game.offer is not None:
            return ["accept", "reject"]
        return [label for _, label in SPLIT_LEVELS if label in split_levels(game.setup["total"])]
    if isinstance(game, Negotiation):
        prices = price_levels(game.setup["value"][game.to_move], game.setup["scale"])
        offers = [label for _, label in PRICE_LEVELS if label in prices]
        return [*offers, "walk", *(["accept", "reject"] if game.standing is not None else [])]
    if isinstance(game, QuestionGame):
        return [*ask_wordings(game.kb), GUESS]
    raise TypeError(f"no scripted player for {type(game).__name__}")


def weights(mixture: dict[str, float], intentions: list[str]) -> list[float]:
    """Each intention's weight: its own plus an even part of its family's (``offer`` -> ``offer:*``)."""
    family = [i.split(":")[0] if ":" in i else None for i in intentions]
    size = Counter(family)
    return [mixture.get(i, 0.0) + (mixture.get(f, 0.0) / size[f] if f else 0.0)
            for i, f in zip(intentions, family)]


def scripted_episode(game: Game, seed: int, rng: random.Random,
                     mixture: dict[str, float] | None = None) -> list[ScriptedMove]:
    """game.reset(seed), then play to the end: at each turn an intention legal in the state drawn
    from ``mixture`` (every role; default :data:`MIXTURES`), rendered with a random wording and
    numbers, and game.step(text). Returns every policy move.

    An ``ask:<attribute>`` is recorded as plain ``ask`` by a game whose oracle matches no
    attribute (an LLM oracle); the moves carry the game's label. Any other disagreement between
    the scripted and the recorded intention is a bug in a wording and raises.
    """
    game.reset(seed)
    moves = []
    while not game.done:
        options = legal(game)
        chances = weights(mixture if mixture is not None else MIXTURES[game.name][role(game)], options)
        if not any(chances):
            raise ValueError(f"{game.name}: the mixture gives no weight to any of {options}")
        intention = rng.choices(options, chances)[0]
        text = render(game, intention, rng)
        first_new = len(game.turns)
        game.step(text)
        turn = game.turns[first_new]
        coarser = turn.intention == ASK and intention.startswith(f"{ASK}:")
        if turn.intention != intention and not coarser:
            raise RuntimeError(f"{game.name}: scripted {intention!r} as {text!r}, "
                               f"the game read {turn.intention!r}")
        moves.append(ScriptedMove(turn.messages, text, turn.intention))
    return moves


def scripted_corpus(games_cfg: GamesConfig, names: list[str], episodes_per_game: int, seed: int,
                    oracle_factory: Callable[[str], Oracle | None] = lambda name: None,
                    mixtures: dict[str, dict[str, float]] | None = None) -> list[dict]:
    """Rows {"game", "messages", "text", "intention"}, one per policy move of
    ``episodes_per_game`` episodes of each game in ``names``: episode i plays game seed
    ``seed + i`` with its own rng (from ``seed``, the game and i), so the rows are a function
    of the arguments. ``oracle_factory(name)``: the oracle of a question game (None: the shared
    one ``games_cfg.oracle`` configures); ``mixtures``: {game: mixture} replacing the defaults.
    """
    rows = []
    for name in names:
        game = make_game(name, games_cfg, oracle=oracle_factory(name))
        if isinstance(getattr(game, "oracle", None), KBOracle):  # every scripted question in one batch
            game.oracle.prime([("", text) for texts in ask_wordings(game.kb).values() for text in texts])
        for i in range(episodes_per_game):
            rng = random.Random(f"scripted:{seed}:{name}:{i}")
            for move in scripted_episode(game, seed + i, rng, (mixtures or {}).get(name)):
                rows.append({"game": name, "messages": move.messages, "text": move.text,
                             "intention": move.intention})
    return rows


# -- rendering ---------------------------------------------------------------------------
def render(game: Game, intention: str, rng: random.Random) -> str:
    """A random wording of ``intention`` in ``game``'s current state. Amounts: a grid step first,
    then a multiple of it, so round numbers are common (as people write them)."""
    if intention in DECISIONS:
        return rng.choice(DECISIONS[intention])
    if isinstance(game, Bargaining):
        own = rng.choice(rng.choice(split_levels(game.setup["total"])[intention]))
        return rng.choice(split_wordings(game.to_move, own, game.setup["total"]))
    if isinstance(game, Negotiation):
        prices = price_levels(game.setup["value"][game.to_move], game.setup["scale"])
        price = rng.choice(rng.choice(prices[intention]))
        return rng.choice(price_wordings(price))
    if intention == GUESS:
        names = game.setup.get("candidates", game.kb.names)
        return rng.choice(guess_wordings(game.kb, rng.choice(names)))
    return rng.choice(ask_wordings(game.kb)[intention])


def on_grid(low: float, high: float, steps: tuple[int, ...],
            level: Callable[[int], str]) -> dict[str, list[list[int]]]:
    """{label: [the multiples of one step in [low, high) with that label, per step]}: round
    amounts grouped by the game's own label of each (so a drawn amount has the drawn label)."""
    levels: dict[str, list[list[int]]] = {}
    for step in steps:
        grouped: dict[str, list[int]] = {}
        for x in range(-(-int(low) // step) * step, int(high), step):
            grouped.setdefault(level(x), []).append(x)
        for label, xs in grouped.items():
            levels.setdefault(label, []).append(xs)
    return levels


@lru_cache(maxsize=None)
def split_levels(total: int) -> dict[str, list[list[int]]]:
    """The proposer's own share, by offer level: round amounts per grid step."""
    low, high = (total * r for r in SHARE_RANGE)
    steps = SPLIT_STEPS.get(total, (max(1, total // 100),))
    return on_grid(low, high + 1, steps, lambda x: split_level(x / total))


@lru_cache(maxsize=None)
def price_levels(value: int, scale: int) -> dict[str, list[list[int]]]:
    """Prices by offer level relative to the mover's ``value``: round amounts per grid step."""
    low, high = (value * r for r in RATIO_RANGE)
    steps = PRICE_STEPS.get(scale, (max(1, scale // 100),))
    return on_grid(max(low, 1), high, steps, lambda x: price_level(x / value))


def split_wordings(me: str, own: int, total: int) -> list[str]:
    """Every wording of the proposal that gives ``me`` the amount ``own`` of ``total``; both
    amounts in one style."""
    mine, theirs = amount_forms(own, total), amount_forms(total - own, total)
    names = {"me": me.capitalize(), "other": rival(me).capitalize()}
    return [template.format(**names, mine=mine[style], theirs=theirs[style])
            for style in mine if style in theirs for template in SPLITS]


def price_wordings(price: int) -> list[str]:
    """Every wording of an offer at ``price``."""
    forms = amount_forms(price)
    dollars = [form for style, form in forms.items() if form.startswith("$")]
    return [template.format(price=form, dollars=form) for template in PRICES
            for form in (dollars if "{dollars}" in template else forms.values())]


@lru_cache(maxsize=None)
def ask_wordings(kb: KnowledgeBase) -> dict[str, list[str]]:
    """{``ask:<attribute>``: the KB's questions of that attribute behind every opener}."""
    wordings: dict[str, list[str]] = {}
    for question in kb.questions:
        for opener in OPENERS:
            capital = not opener or opener.endswith(". ")  # "Okay, is it ..." / "Interesting. Is it ..."
            text = question.text if capital else question.text[0].lower() + question.text[1:]
            wordings.setdefault(f"{ASK}:{question.attribute}", []).append(opener + text)
    return wordings


def guess_wordings(kb: KnowledgeBase, name: str) -> list[str]:
    """Every wording of a guess of entry ``name``: any of its spellings, objects with an article."""
    forms = []
    for spelling in kb.entries[name].spellings:
        if kb.domain == "cities":
            forms.append(spelling)
        else:
            plural = spelling.endswith("s") and not spelling.endswith("us")
            forms += [spelling if plural else f"{'an' if spelling[0] in 'aeiou' else 'a'} {spelling}",
                      f"the {spelling}"]
    return [template.format(name=form) for form in forms for template in GUESSES]
