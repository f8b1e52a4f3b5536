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
_ACCEPT = r"accept\w*|agree\w*|deal|yes"
_REJECT = r"reject\w*|decline\w*|refuse\w*|no|nope"
_DECISION = re.compile(rf"\b(?:(?P<accept>{_ACCEPT})|(?P<reject>{_REJECT}))\b", re.I)
_NEGATED = re.compile(
    r"\b(?:not|don[’']?t|do not|won[’']?t|will not|can[’']?t|cannot|never|no)\s+(?:\w+\s+)?$", re.I)
_WALK = re.compile(r"\b(?:walk\w*|john)\b", re.I)
_UPPER_OFFER = re.compile(r"\bOFFER\b")
_OFFER_WORD = re.compile(r"(?<!your )\b(?:offer|counter|propose|how about|price|pay|sell|for)\w*", re.I)


def amounts(text: str, total: float | None = None) -> list[tuple[float, int, int]]:
    """(value, start, end) of every finite amount; percentages need ``total`` (else skipped)."""
    found = []
    for m in _NUMBER.finditer(text):
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


def _first(pattern: re.Pattern, text: str, skip_negated: bool = True) -> re.Match | None:
    for m in pattern.finditer(text):
        if not (skip_negated and _NEGATED.search(text[:m.start()])):
            return m
    return None


def parse_decision(text: str) -> str | None:
    """"accept" / "reject" from the first decision word ("I don't accept" rejects), else None."""
    text = text[:MAX_CHARS]
    m = _first(_DECISION, text, skip_negated=False)
    if m is None:
        return None
    return "accept" if m.group("accept") and not _NEGATED.search(text[:m.start()]) else "reject"


def parse_price_move(text: str) -> tuple[str, float | None] | None:
    """("offer", price) / ("accept", None) / ("walk", None) / ("reject", None), or None.

    The earliest of walk-away, accept and an offered price wins ("REJECT. OFFER 110" is a
    counter-offer). The price follows "OFFER" when written that way, else an offer word
    ("how about 110"), else it is the first amount of a text that does not reject.
    """
    text = text[:MAX_CHARS]
    prices = amounts(text)
    price = None
    for cue in (_UPPER_OFFER.search(text), _OFFER_WORD.search(text)):
        if cue:
            price = next(((v, s) for v, s, _ in prices if s >= cue.end()), None)
            if price:
                break
    decision = _first(_DECISION, text, skip_negated=False)
    rejects = decision is not None and (decision.group("reject") or _NEGATED.search(text[:decision.start()]))
    if price is None and prices and not rejects:
        price = prices[0][:2]
    moves = []
    if (walk := _first(_WALK, text)) is not None:
        moves.append((walk.start(), "walk", None))
    if (accept := _first(re.compile(rf"\b(?:{_ACCEPT})\b", re.I), text)) is not None:
        moves.append((accept.start(), "accept", None))
    if price is not None and price[0] > 0:
        moves.append((price[1], "offer", round(price[0], 2)))
    if moves:
        _, kind, value = min(moves, key=lambda m: m[0])
        return kind, value
    return ("reject", None) if rejects else None
