"""Scripted players (src.games.scripted) and the games' true intentions (Turn.intention): every
scripted wording is read by the game's own parser as the move it was rendered from."""
import json
import random
from collections import Counter

import pytest

from src.config import defaults
from src.games import GamesConfig, make_game
from src.games import bargaining, negotiation
from src.games.common import INVALID
from src.games.questions import ASK, ASK_UNMATCHED, GUESS, intentions
from src.games.scripted import (ACCEPT, DECISIONS, GUESSES, MIXTURES, OPENERS, PRICES, REJECT,
                                SPLITS, WALK, ask_wordings, guess_wordings, price_levels,
                                price_wordings, scripted_corpus, scripted_episode, split_levels,
                                split_wordings)
from src.oracles import get_oracle
from src.oracles.kb import Answer, load_kb

CFG = defaults(GamesConfig, "games")  # params.yaml: 3 rounds, 6 questions, candidate lists
QUESTION_GAMES = ("twenty_questions", "guess_my_city")
MAX_WORDS = 16  # a reply fits max_new_tokens uncut


class CannedOracle:
    """Answers "No." without an embedder (an oracle that matches no attribute, as an LLM's)."""

    def __init__(self, domain):
        self.kb = load_kb(domain)

    def answer(self, target, question):
        return Answer("No.", {"answer": "no", "attribute": None})


@pytest.fixture(scope="module")
def kb_oracles():
    return {"twenty_questions": get_oracle("objects", CFG.oracle),
            "guess_my_city": get_oracle("cities", CFG.oracle)}


def canned(name):
    return CannedOracle("objects" if name == "twenty_questions" else "cities")


def step(g, text):
    """Step ``text`` and return its policy turn."""
    n = len(g.turns)
    g.step(text)
    return g.turns[n]


def representative(groups):
    """First, middle and last amount of each grid step's group."""
    return sorted({x for xs in groups for x in (xs[0], xs[len(xs) // 2], xs[-1])})


# -- every wording is read as its intention ----------------------------------------------
@pytest.mark.parametrize("total", bargaining.TOTALS)
def test_every_split_wording_is_read_as_its_offer_level(total):
    g = make_game("bargaining", CFG)
    setup = {"total": total, "delta": {"alice": 0.9, "bob": 0.9}, "max_rounds": 3}
    levels = split_levels(total)
    assert sorted(levels) == sorted(label for _, label in bargaining.OFFER_LEVELS)  # all reachable
    for me in ("alice", "bob"):
        for level, groups in levels.items():
            for own in representative(groups):
                for text in split_wordings(me, own, total):
                    g.start(setup)
                    if me == "bob":
                        step(g, "pass")  # an invalid proposal: round 2, Bob proposes
                    turn = step(g, text)
                    assert turn.valid and turn.intention == level, (text, turn.intention)
                    assert turn.move[me] == own and len(text.split()) <= MAX_WORDS, text


def test_every_decision_wording_is_read_as_accept_or_reject():
    g = make_game("bargaining", CFG)
    for intention in ("accept", "reject"):
        for text in DECISIONS[intention]:
            g.start({"total": 100, "delta": {"alice": 1.0, "bob": 1.0}, "max_rounds": 3})
            step(g, "Alice gets $60, Bob gets $40.")
            turn = step(g, text)
            assert turn.valid and turn.intention == intention, text


@pytest.mark.parametrize("scale", negotiation.SCALES)
def test_every_price_wording_is_read_as_its_offer_level(scale):
    g = make_game("negotiation", CFG)
    for value in (round(scale * m) for m in negotiation.MULTIPLIERS):
        setup = {"scale": scale, "value": {"alice": value, "bob": value}, "max_rounds": 3}
        levels = price_levels(value, scale)
        assert sorted(levels) == sorted(label for _, label in negotiation.OFFER_LEVELS)
        for me in ("alice", "bob"):
            for level, groups in levels.items():
                for price in representative(groups):
                    for text in price_wordings(price):
                        g.start(setup)
                        if me == "bob":
                            step(g, "OFFER $1")
                        turn = step(g, text)
                        assert turn.valid and turn.intention == level, (text, turn.intention)
                        assert turn.move["price"] == price and len(text.split()) <= MAX_WORDS, text


def test_every_negotiation_decision_is_read_as_itself():
    g = make_game("negotiation", CFG)
    for intention, texts in DECISIONS.items():
        for text in texts:
            for opening in ([], ["OFFER $120"]):  # walk at once or after an offer
                if intention != "walk" and not opening:
                    continue
                g.reset(1)
                for before in opening:
                    step(g, before)
                turn = step(g, text)
                assert turn.valid and turn.intention == intention, text
                assert turn.move["type"] == intention, text


@pytest.mark.parametrize("name", QUESTION_GAMES)
def test_every_ask_wording_is_matched_to_its_attribute(name, kb_oracles):
    oracle = kb_oracles[name]
    wordings = ask_wordings(oracle.kb)
    oracle.prime([("", text) for texts in wordings.values() for text in texts])  # one batch
    g = make_game(name, CFG, oracle=oracle)
    for intention, texts in wordings.items():
        assert len(texts) >= 8, intention
        for text in texts:
            g.reset(0)
            turn = step(g, text)
            assert turn.valid and turn.intention == intention, (text, turn.intention)
            assert len(text.split()) <= MAX_WORDS, text


@pytest.mark.parametrize("name", QUESTION_GAMES)
def test_every_guess_wording_is_a_guess_right_or_wrong(name, kb_oracles):
    oracle = kb_oracles[name]
    kb, g = oracle.kb, make_game(name, CFG, oracle=oracle)
    key = "object" if name == "twenty_questions" else "city"
    for entry in kb.names:
        other = kb.names[kb.names.index(entry) - 1]
        for text in guess_wordings(kb, entry):
            assert kb.guessed(text).name == entry, text  # a wrong guess is answered "No"
            g.start({key: other, "max_turns": 6})
            turn = step(g, text)
            assert turn.valid and turn.intention == GUESS and not g.done, text
            assert g.turns[-1].move["attribute"] == "guess", text
            g.start({key: entry, "max_turns": 6})
            turn = step(g, text)
            assert turn.intention == GUESS and g.outcome["solved"], text
            assert len(text.split()) <= MAX_WORDS, text


# -- the games' own labels -----------------------------------------------------------------
def test_invalid_and_unmatched_moves_have_their_labels(kb_oracles):
    g = make_game("bargaining", CFG)
    g.reset(0)
    assert step(g, "Hello there").intention == INVALID
    step(g, "Bob gets $20, Alice gets $80.")
    assert step(g, "Maybe later").intention == INVALID  # no decision word: rejects
    g = make_game("negotiation", CFG)
    g.reset(0)
    assert step(g, "I accept").intention == INVALID  # nothing to accept yet
    assert step(g, "REJECT").intention == "reject"
    g = make_game("twenty_questions", CFG, oracle=kb_oracles["twenty_questions"])
    g.reset(0)
    assert step(g, "???").intention == INVALID
    assert step(g, "Does it have a handle?").intention == ASK_UNMATCHED  # below the floor
    assert step(g, "Is it a pen, a cup or a dog?").intention != GUESS  # names three entries
    g = make_game("twenty_questions", CFG, oracle=canned("twenty_questions"))
    g.reset(0)
    assert step(g, "Is it alive?").intention == ASK  # an oracle that matches no attribute


@pytest.mark.parametrize("name", ["bargaining", "negotiation", "twenty_questions", "guess_my_city"])
def test_record_holds_the_intention_of_every_policy_turn(name, kb_oracles):
    vocabulary = ({*bargaining.INTENTIONS["proposer"], *bargaining.INTENTIONS["responder"]}
                  if name == "bargaining" else set(negotiation.INTENTIONS["alice"])
                  if name == "negotiation" else set(intentions(kb_oracles[name].kb)))
    g = make_game(name, CFG, oracle=kb_oracles.get(name))
    for seed in range(4):
        moves = scripted_episode(g, seed, random.Random(seed))
        turns = g.record()["turns"]
        policy = [t for t in turns if t["speaker"] != "env"]
        assert [t["intention"] for t in policy] == [m.intention for m in moves]
        assert [t["messages"] for t in policy] == [m.messages for m in moves]
        assert all(t["intention"] in vocabulary for t in policy)
        assert all("intention" not in t for t in turns if t["speaker"] == "env")


# -- corpus --------------------------------------------------------------------------------
def test_corpus_is_a_function_of_its_arguments(kb_oracles):
    def corpus(seed):
        rows = scripted_corpus(CFG, list(CFG.names), 3, seed, oracle_factory=kb_oracles.get)
        return json.dumps(rows, sort_keys=False)

    first = corpus(5)
    assert first == corpus(5) and first != corpus(6)
    rows = json.loads(first)
    assert {r["game"] for r in rows} == set(CFG.names)
    assert all(set(r) == {"game", "messages", "text", "intention"} for r in rows)


def test_mixture_is_respected_and_play_is_paraphrase_rich():
    moves = {name: [] for name in CFG.names}
    outcomes = Counter()
    for name in CFG.names:
        g = make_game(name, CFG, oracle=canned(name) if name in QUESTION_GAMES else None)
        seed = 0
        while len(moves[name]) < 600:
            moves[name] += scripted_episode(g, seed, random.Random(seed))
            outcomes[name, bool(g.outcome.get("deal", g.outcome.get("solved")))] += 1
            seed += 1
    # every game ends both ways: deals (solved) and none
    assert all(outcomes[name, True] and outcomes[name, False] for name in CFG.names), outcomes

    counts = Counter(m.intention for m in moves["bargaining"])
    offers = sum(counts[label] for label in MIXTURES["bargaining"]["proposer"])
    for label, share in MIXTURES["bargaining"]["proposer"].items():
        assert abs(counts[label] / offers - share) < 0.07, (label, counts)
    responses = counts["accept"] + counts["reject"]
    assert abs(counts["accept"] / responses - MIXTURES["bargaining"]["responder"]["accept"]) < 0.08
    for name in QUESTION_GAMES:
        counts = Counter(m.intention for m in moves[name])  # canned oracle: asks recorded as "ask"
        assert set(counts) == {ASK, GUESS} and abs(counts[GUESS] / len(moves[name]) - MIXTURES[name]["agent"][GUESS]) < 0.07

    texts = Counter((m.intention, m.text) for m in moves["bargaining"] + moves["negotiation"])
    distinct = Counter(intention for intention, _ in texts)
    assert all(n >= 10 for n in distinct.values()), distinct
    assert len(ACCEPT) >= 12 and len(REJECT) >= 12 and len(WALK) >= 10
    assert len(SPLITS) >= 16 and len(PRICES) >= 16 and len(OPENERS) >= 8 and len(GUESSES) >= 12


def test_a_mixture_override_restricts_the_intentions():
    g = make_game("bargaining", CFG)
    for seed in range(10):
        moves = scripted_episode(g, seed, random.Random(seed), {"offer:even": 1.0, "reject": 1.0})
        assert [m.intention for m in moves] == ["offer:even", "reject"] * 3
    g = make_game("negotiation", CFG)
    moves = scripted_episode(g, 0, random.Random(0), {"offer": 1.0})  # a family: every level
    assert len(moves) == 6 and all(m.intention.startswith("offer:") for m in moves)
    with pytest.raises(ValueError):
        scripted_episode(g, 0, random.Random(0), {"accept": 1.0})  # nothing to accept at first
