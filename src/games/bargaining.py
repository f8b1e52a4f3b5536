"""Bargaining (docs/method.md §3.1, after GLEE): Alice and Bob split M dollars with discounting.

Round r: the proposer (Alice in odd rounds, Bob in even) offers a split, the other player
accepts (game ends) or rejects (next round, the rejecter proposes). Both are policy turns. An
invalid proposal means the proposer passes (no offer, next round); an invalid response rejects.
A deal in round r pays δ_p^(r-1) times the face value; no deal after ``max_rounds`` pays 0 to both.

True intentions (``Turn.intention``): a proposal is labelled by the proposer's own share of the
total (:data:`OFFER_LEVELS`), a response ``accept`` / ``reject``, an invalid move ``invalid``.
"""
from __future__ import annotations

import random

from src.games.base import REGISTRY
from src.games.common import INVALID, TwoPlayerGame, loss_percent, money, relative_rewards, rival
from src.games.parsing import parse_decision, parse_split

TOTALS = (100, 10_000, 1_000_000)
DELTAS = (0.8, 0.9, 0.95, 1.0)
# (lowest own share, label), highest first: >= 70 % greedy, 55-70 % high, 45-55 % even, < 45 % low
OFFER_LEVELS = ((0.70, "offer:greedy"), (0.55, "offer:high"), (0.45, "offer:even"), (0.0, "offer:low"))
INTENTIONS = {"proposer": (*(label for _, label in OFFER_LEVELS), INVALID),
              "responder": ("accept", "reject", INVALID)}


def offer_level(own_share: float) -> str:
    """The label of a proposal that gives its proposer ``own_share`` of the total."""
    return next(label for low, label in OFFER_LEVELS if own_share >= low)


@REGISTRY.register
class Bargaining(TwoPlayerGame):
    name = "bargaining"

    def sample_setup(self, rng: random.Random) -> dict:
        return {"total": rng.choice(TOTALS), "delta": {p: rng.choice(DELTAS) for p in self.players},
                "max_rounds": self.max_rounds}

    def on_start(self) -> None:
        super().on_start()
        self.round = 1
        self.offer: float | None = None  # Alice's share in the pending proposal
        self.announce_round()

    @property
    def proposer(self) -> str:
        return self.players[(self.round - 1) % 2]

    @property
    def to_move(self) -> str:
        return self.proposer if self.offer is None else rival(self.proposer)

    def split_text(self, alice: float) -> str:
        return f"Alice gets {money(alice)}, Bob gets {money(self.setup['total'] - alice)}"

    def example(self, me: str) -> str:
        mine = 0.6 * self.setup["total"] if me == "alice" else 0.4 * self.setup["total"]
        return self.split_text(mine)

    def system_prompt(self) -> str:
        me, total, limit = self.to_move, self.setup["total"], self.setup["max_rounds"]
        you, other = me.capitalize(), rival(me).capitalize()
        return (
            f"You are {you}; you and {other} split {money(total)}. Alice offers in odd rounds, Bob in "
            f"even; the other accepts or rejects. Each round of delay, money loses "
            f"{loss_percent(self.setup['delta'][me])} of its value for you, "
            f"{loss_percent(self.setup['delta'][rival(me)])} for {other}. No deal after {limit} rounds: "
            f"both get $0. Win by ending with more money than {other}.\n"
            f"Reply to an offer with ACCEPT or REJECT.")

    def now_prompt(self, brief: bool = False) -> str:
        if self.offer is None:
            return "Your offer:" if brief else f"Example offer: {self.example(self.to_move)}\nNow make your offer."
        return "Reply ACCEPT or REJECT."

    def play(self, player: str, text: str, messages: list[dict]) -> None:
        name = player.capitalize()
        if self.offer is None:
            share = parse_split(text, self.setup["total"])
            if share is None:
                self.add_turn(player, text, {"type": "pass"}, messages, valid=False)
                self.note(f"{name} made no valid offer.", by=player)
                self.next_round()
            else:
                self.offer = share
                split = {"alice": share, "bob": round(self.setup["total"] - share, 2)}
                self.add_turn(player, text, {"type": "offer", **split}, messages,
                              intention=offer_level(split[player] / self.setup["total"]))
                self.note(f"{name} offers: {self.split_text(share)}.", by=player, own=self.split_text(share))
            return
        decision = parse_decision(text)
        accepted = decision == "accept"
        self.add_turn(player, text, {"type": "accept" if accepted else "reject"}, messages,
                      valid=decision is not None, intention=decision)
        if accepted:
            self.end(self.offer)
        else:
            if decision:
                self.note(f"{name} rejects.", by=player, own="REJECT")
            else:
                self.note(f"{name} gave no valid answer: rejected.", by=player)
            self.offer = None
            self.next_round()

    def next_round(self) -> None:
        if self.round >= self.setup["max_rounds"]:
            self.end(None)
        else:
            self.round += 1
            self.announce_round()

    def end(self, alice_share: float | None) -> None:
        total, delta, r = self.setup["total"], self.setup["delta"], self.round
        if alice_share is None:
            split, payoffs = None, {"alice": 0.0, "bob": 0.0}
        else:
            split = {"alice": alice_share, "bob": round(total - alice_share, 2)}
            payoffs = {p: round(delta[p] ** (r - 1) * split[p], 6) for p in self.players}
        self.finish({"deal": split is not None, "round": r, "split": split, "payoffs": payoffs},
                    relative_rewards(payoffs))
