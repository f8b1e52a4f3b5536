"""Negotiation (docs/method.md §3.2, after GLEE): Alice sells one item to Bob.

Alice values the item at V_A, Bob at V_B; Alice knows both, Bob only his own. Players alternate
turns, Alice first; round r is turns 2r-1 (Alice) and 2r (Bob). On a turn a player may OFFER a
price (a counter-offer replaces the one on the table), ACCEPT the rival's standing offer (deal),
REJECT it, or WALK away to the outside buyer/seller John (no deal). An invalid move, or
accepting when no offer stands, rejects without a counter-offer. Deal at price p: u_A = p - V_A,
u_B = V_B - p; no deal: 0 and 0; nothing agreed after ``max_rounds`` rounds is no deal.

True intentions (``Turn.intention``): an offer is labelled by its price relative to the mover's
own value (Alice: price / V_A, Bob: price / V_B; :data:`OFFER_LEVELS`); otherwise ``accept``,
``reject``, ``walk``, or ``invalid`` (accepting when no offer stands included).
"""
from __future__ import annotations

import random

from src.games.base import REGISTRY
from src.games.common import INVALID, TwoPlayerGame, money, relative_rewards, rival
from src.games.parsing import parse_price_move

SCALES = (100, 10_000)
MULTIPLIERS = (0.8, 1.0, 1.2, 1.5)
# (lowest price / own value, label), highest first: < 0.8 far below, 0.8-0.95 below, 0.95-1.05 at,
# 1.05-1.25 above, >= 1.25 far above
OFFER_LEVELS = ((1.25, "offer:far_above"), (1.05, "offer:above"), (0.95, "offer:at"),
                (0.8, "offer:below"), (0.0, "offer:far_below"))
INTENTIONS = {player: (*(label for _, label in OFFER_LEVELS), "accept", "reject", "walk", INVALID)
              for player in ("alice", "bob")}


def offer_level(ratio: float) -> str:
    """The label of an offer at ``ratio`` times the mover's own value."""
    return next(label for low, label in OFFER_LEVELS if ratio >= low)


@REGISTRY.register
class Negotiation(TwoPlayerGame):
    name = "negotiation"

    def sample_setup(self, rng: random.Random) -> dict:
        scale = rng.choice(SCALES)
        return {"scale": scale, "value": {p: round(scale * rng.choice(MULTIPLIERS)) for p in self.players},
                "max_rounds": self.max_rounds}

    def on_start(self) -> None:
        super().on_start()
        self.turn = 0  # policy turns played
        self.standing: float | None = None  # the rival's offer on the table
        self.announce_round()

    @property
    def round(self) -> int:
        return self.turn // 2 + 1

    @property
    def to_move(self) -> str:
        return self.players[self.turn % 2]

    def system_prompt(self) -> str:
        me, values, limit = self.to_move, self.setup["value"], self.setup["max_rounds"]
        own, other = money(values[me]), rival(me).capitalize()
        if me == "alice":
            role = (f"You are Alice, selling an item to Bob. It is worth {own} to you, "
                    f"{money(values['bob'])} to Bob.")
            gains = "you P minus your value, Bob his value minus P"
        else:
            role = (f"You are Bob, buying an item from Alice. It is worth {own} to you; Alice's "
                    f"value is secret.")
            gains = "you your value minus P, Alice P minus her value"
        return (
            f"{role} Turns alternate, Alice first. Each turn reply OFFER $<price>, ACCEPT (the last "
            f"offer), REJECT, or WALK (deal with John at your value instead: no deal). A deal at "
            f"price P gains {gains}. Max {limit} rounds. Win by gaining more than {other}.")

    def now_prompt(self, brief: bool = False) -> str:
        me, head = self.to_move, "Your opening offer" if self.turn == 0 else "Your move"
        if brief:
            return f"{head}:"
        example = f"OFFER {money(self.setup['value'][me] * (1.25 if me == 'alice' else 0.8))}"
        return f"Example reply: {example}\n{head}:"

    def play(self, player: str, text: str, messages: list[dict]) -> None:
        kind, price = parse_price_move(text) or ("invalid", None)
        name = player.capitalize()
        if kind == "walk":
            self.add_turn(player, text, {"type": "walk"}, messages, intention="walk")
            self.end(None, walked_away=player)
            return
        if kind == "accept" and self.standing is not None:
            self.add_turn(player, text, {"type": "accept", "price": self.standing}, messages,
                          intention="accept")
            self.end(self.standing)
            return
        if kind == "offer":
            self.standing = price
            self.add_turn(player, text, {"type": "offer", "price": price}, messages,
                          intention=offer_level(price / self.setup["value"][player]))
            self.note(f"{name}: OFFER {money(price)}.", by=player, own=f"OFFER {money(price)}")
        else:
            self.standing = None
            valid = kind == "reject"
            self.add_turn(player, text, {"type": "reject"}, messages, valid=valid, intention="reject")
            if valid:
                self.note(f"{name}: REJECT.", by=player, own="REJECT")
            else:
                self.note(f"{name} made no valid move: rejected.", by=player)
        self.turn += 1
        if self.turn >= 2 * self.setup["max_rounds"]:
            self.end(None)
        elif self.turn % 2 == 0:
            self.announce_round()

    def end(self, price: float | None, walked_away: str | None = None) -> None:
        values = self.setup["value"]
        payoffs = ({"alice": 0.0, "bob": 0.0} if price is None else
                   {"alice": round(price - values["alice"], 6), "bob": round(values["bob"] - price, 6)})
        self.finish({"deal": price is not None, "price": price, "round": self.round,
                     "walked_away": walked_away, "payoffs": payoffs}, relative_rewards(payoffs))
