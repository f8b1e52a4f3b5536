"""Tolerant move parsers for the two-player games: the move in free text, or None (invalid).

Small models write "Alice gets $60, Bob gets $40. Fair?", "ok I accept", "OFFER 1.2k". Only the
first ``MAX_CHARS`` characters are read. Amounts accept "$", thousands commas, decimals and
k / thousand / m / million; a percentage counts as a share of the total where one exists.
"""
from __future__ import annotations

import math
import re

MAX_CHARS = 1000
_NUMBER = re.compile(
    r"(?<![\w.])\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s*(%|(?:k|thousand|mn|m|million)\b)|(?=\W|$))",
    re.I)
_SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6}
_NAMES = re.compile(r"\b(alice|bob)\b", re.I)
_FOR_NAME = re.compile(r"\s*(?:dollars?|usd)?\s*(?:for|to|goes to|go to)\s+(alice|bob)\b", re.I)
# Whole decision words only: "Acceptable" and "acceptance" decide nothing, and "deal" is not an
# answer ("No deal" rejects through "no"; "WON'T let me deal" says nothing).
_ACCEPT = r"accept|accepts|accepted|accepting|agree|agreed|agrees|yes"
_REJECT = r"reject|rejects|rejected|rejecting|decline|declined|declines|refuse|refused|refuses|no|nope"
_DECISION = re.compile(rf"\b(?:(?P<accept>{_ACCEPT})|(?P<reject>{_REJECT}))\b", re.I)
# A negation up to three words before a word, within its clause: "I do not really accept",
# "I won't reject" (but "No, I accept" accepts: the comma ends the clause).
_NEGATED = re.compile(
    r"\b(?:not|don[’']?t|do not|won[’']?t|will not|can[’']?t|cannot|never|no)\s+(?:[\w’']+\s+){0,2}$",
    re.I)
_CLAUSE_END = re.compile(r"[.,;:!?()\n\"]")
_WALK = re.compile(r"\b(?:walk\w*|john)\b", re.I)
_UPPER_OFFER = re.compile(r"\bOFFER\b")
_OFFER_WORD = re.compile(r"(?<!your )\b(?:offer|counter|propose|how about|price|pay|sell|for)\w*", re.I)


def amounts(text: str, total: float | None = None) -> list[tuple[float, int, int]]:
    """(value, start, end) of every finite amount; percentages need ``total`` (else skipped)."""
    found = []
    for m in _NUMBER.finditer(text):
        if text[m.end():] == ",":  # "$600," at the very end: a number cut mid-way ($600,000)
            continue
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        unit = (m.group(3) or "").lower()
        if unit == "%":
            if total is None:
                continue
            value = value * total / 100
        value *= _SCALE.get(unit, 1)
        if math.isfinite(value):
            found.append((value, m.start(), m.end()))
    return found


def parse_split(text: str, total: float) -> float | None:
    """Alice's share of ``total`` from "Alice gets X, Bob gets Y" (either name may be left out;
    "X for Bob" works too). Both given must add up to the total; shares must lie in [0, total]."""
    text = text[:MAX_CHARS]
    shares: dict[str, float] = {}
    for value, start, end in amounts(text, total):
        after = _FOR_NAME.match(text, end)
        if after:
            owner = after.group(1)
        else:
            window = re.split(r"\d", text[max(0, start - 30):start])[-1]
            names = _NAMES.findall(window)
            if not names:
                continue
            owner = names[-1]
        shares.setdefault(owner.lower(), value)
    if not shares or not all(0 <= v <= total for v in shares.values()):
        return None
    alice = shares.get("alice", total - shares.get("bob", 0.0))
    if "bob" in shares and abs(alice + shares["bob"] - total) > 0.005:
        return None
    return round(alice, 2)


def negated(text: str, start: int) -> bool:
    """Is the word at ``start`` negated within its clause ("I do not accept")?"""
    clause = _CLAUSE_END.split(text[:start])[-1]
    return bool(_NEGATED.search(clause))


def _first(pattern: re.Pattern, text: str) -> re.Match | None:
    """The first match of ``pattern`` that is not negated."""
    return next((m for m in pattern.finditer(text) if not negated(text, m.start())), None)


def decision(text: str) -> tuple[str, int] | None:
    """(accept | reject, position) of the first decision word that says something: a negated
    accept rejects ("I don't accept"), a negated reject is skipped ("I won't refuse, but ...")."""
    for m in _DECISION.finditer(text):
        if not negated(text, m.start()):
            return ("accept" if m.group("accept") else "reject"), m.start()
        if m.group("accept"):
            return "reject", m.start()
    return None


def parse_decision(text: str) -> str | None:
    """"accept" / "reject" from the first decision word ("I don't accept" rejects), else None."""
    found = decision(text[:MAX_CHARS])
    return found[0] if found else None


def offered_price(text: str) -> tuple[float, int] | None:
    """(price, position) of an offer: the first amount after "OFFER" or an offer word ("how
    about 110"), else the first amount written with a "$". A bare number is no offer ("SURPRISE:
    1.5 x 4.0 = 6.54" offers nothing)."""
    prices = amounts(text)
    for cue in (_UPPER_OFFER.search(text), _OFFER_WORD.search(text)):
        if cue:
            price = next(((v, s) for v, s, _ in prices if s >= cue.end()), None)
            if price:
                return price
    return next(((v, s) for v, s, _ in prices if text[s] == "$"), None)


def parse_price_move(text: str) -> tuple[str, float | None] | None:
    """("offer", price) / ("accept", None) / ("walk", None) / ("reject", None), or None.

    The earliest of walk-away, accept and an offered price wins ("REJECT. OFFER 110" is a
    counter-offer; "I reject your offer of 130" only rejects).
    """
    text = text[:MAX_CHARS]
    price = offered_price(text)
    said = decision(text)
    moves = []
    if (walk := _first(_WALK, text)) is not None:
        moves.append((walk.start(), "walk", None))
    if said is not None and said[0] == "accept":
        moves.append((said[1], "accept", None))
    if price is not None and price[0] > 0:
        moves.append((price[1], "offer", round(price[0], 2)))
    if moves:
        _, kind, value = min(moves, key=lambda m: m[0])
        return kind, value
    return ("reject", None) if said is not None else None
