"""The four games' rules (docs/method.md §3), the observation contract and the rollout record."""
import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.config import ConfigError, defaults
from src.games import (GAME_NAMES, REGISTRY, GamesConfig, QuestionsConfig, TwoPlayerConfig,
                       UnknownGame, make_game)
from src.games.bargaining import DELTAS, TOTALS
from src.games.negotiation import MULTIPLIERS, SCALES
from src.games.parsing import amounts, parse_decision, parse_price_move, parse_split
from src.oracles.kb import Answer, load_kb
from src.rollout.format import validate_rollout


# the paper's lengths (20 rounds or questions, the whole KB), params.yaml's oracle
PAPER = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=20),
                 negotiation=TwoPlayerConfig(max_rounds=20),
                 twenty_questions=QuestionsConfig(max_turns=20, candidates=0),
                 guess_my_city=QuestionsConfig(max_turns=20, candidates=0))


class CannedOracle:
    """Answers every question "No." without an embedder: isolates the games' own rules."""

    def __init__(self, domain):
        self.kb = load_kb(domain)
        self.asked = []

    def answer(self, target, question):
        self.asked.append(question)
        return Answer("No.", {"answer": "no", "attribute": None})


def game(name, setup=None, seed=0, oracle=None):
    g = make_game(name, PAPER, oracle=oracle)
    if setup is None:
        g.reset(seed)
    else:
        g.start(setup, seed)
    return g


def play(g, texts):
    """Step through ``texts``; check each policy turn stores the observation shown before it."""
    for text in texts:
        assert not g.done, f"game ended before {text!r}"
        shown = g.observation()
        n = len(g.turns)
        g.step(text)
        assert g.turns[n].messages == shown and g.turns[n].text == text
    return g


def bargain(total=100, da=1.0, db=1.0, rounds=20):
    return game("bargaining", {"total": total, "delta": {"alice": da, "bob": db}, "max_rounds": rounds})


def negotiate(va=100, vb=120, rounds=20):
    return game("negotiation", {"scale": 100, "value": {"alice": va, "bob": vb}, "max_rounds": rounds})


def questions(name, target, oracle=None, turns=20):
    key = "object" if name == "twenty_questions" else "city"
    return game(name, {key: target, "max_turns": turns}, oracle=oracle or canned(name))


def canned(name):
    return CannedOracle("objects" if name == "twenty_questions" else "cities")


TARGETS = {"twenty_questions": "teddy bear", "guess_my_city": "Lima, Peru"}


def fresh(name):
    """A game of each kind; the single-agent ones with a canned oracle and a fixed target."""
    return questions(name, TARGETS[name]) if name in TARGETS else game(name, seed=3)


# -- registry, config, setups -----------------------------------------------------------
def test_registry_unknown_game_and_shared_oracles():
    assert set(GAME_NAMES) == set(REGISTRY.factories)
    with pytest.raises(UnknownGame, match="known games: bargaining, guess_my_city, negotiation"):
        make_game("chess", PAPER)
    assert make_game("twenty_questions", PAPER).oracle is make_game("twenty_questions", PAPER).oracle


def test_games_config_checks_keys_and_ranges():
    oracle = dataclasses.replace(PAPER.oracle, similarity_floor=0.5)
    cfg = defaults(GamesConfig, "games", bargaining={"max_rounds": 6}, oracle=oracle)
    assert cfg.bargaining.max_rounds == 6 and cfg.oracle.similarity_floor == 0.5
    g = make_game("bargaining", cfg)
    g.reset(0)
    assert g.setup["max_rounds"] == 6
    for bad in ({"bargaining": {"max_round": 3}}, {"bargaining": {}},
                {"twenty_questions": {"max_turns": 0, "candidates": 0}},
                {"oracle": dataclasses.replace(PAPER.oracle, kind="gpt")},
                {"oracle": dataclasses.replace(PAPER.oracle, kind="llm")}):
        with pytest.raises(ConfigError):
            defaults(GamesConfig, "games", **bad)


def test_setups_are_drawn_as_specified_and_seeded():
    kb_objects, kb_cities = load_kb("objects"), load_kb("cities")
    seen = {name: [] for name in GAME_NAMES}
    for seed in range(300):
        for name in GAME_NAMES:
            g = make_game(name, PAPER, oracle=canned(name))
            g.reset(seed)
            seen[name].append(g.setup)
    assert {s["total"] for s in seen["bargaining"]} == set(TOTALS)
    assert {s["delta"][p] for s in seen["bargaining"] for p in ("alice", "bob")} == set(DELTAS)
    values = {s["value"][p] / s["scale"] for s in seen["negotiation"] for p in ("alice", "bob")}
    assert values == set(MULTIPLIERS) and {s["scale"] for s in seen["negotiation"]} == set(SCALES)
    assert {s["object"] for s in seen["twenty_questions"]} <= set(kb_objects.names)
    assert len({s["city"] for s in seen["guess_my_city"]}) > 80
    assert {s["city"] for s in seen["guess_my_city"]} <= set(kb_cities.names)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_seed_and_texts_determine_the_episode(name):
    texts = ["Alice gets 70, Bob gets 30", "REJECT", "OFFER 120", "hello?", "Is it alive?"] * 3
    oracle = canned(name)
    records = []
    for _ in range(2):
        g = game(name, seed=7, oracle=oracle)
        for t in texts:
            g.step(t)
        records.append(g.record())
    assert records[0] == records[1]


# -- the rollout record -----------------------------------------------------------------
SCRIPTS = {
    "bargaining": ["Alice gets $70, Bob gets $30.", "REJECT", "no idea", "Alice gets 40, Bob gets 60",
                   "I accept."],
    "negotiation": ["OFFER $130", "hmm", "OFFER $125", "OFFER 110", "ACCEPT"],
    "twenty_questions": ["Is it alive?", "", "Is it a teddy bear?"],
    "guess_my_city": ["Is it in Europe?", "???", "Is it Lima?"],
}


@pytest.mark.parametrize("name", GAME_NAMES)
def test_record_validates_once_the_engine_adds_its_fields(name):
    g = fresh(name)
    play(g, SCRIPTS[name])
    assert g.done
    record = g.record()
    record.update(episode_id=f"{name}-000003", policy={"model": "models/base", "sampling": {}})
    validate_rollout(record, "test")
    assert all(0 <= r <= 1 for r in record["rewards"].values())
    assert set(record["rewards"]) == set(g.players)
    assert sum(not t["valid"] for t in record["turns"]) == sum(g.outcome["invalid"].values()) == 1
    for turn in record["turns"]:
        assert (turn["speaker"] == "env") == ("messages" not in turn)


def test_observation_is_short_chat_with_system_first():
    for name in GAME_NAMES:
        messages = fresh(name).observation()
        assert [m["role"] for m in messages] == ["system", "user"]
        assert len(messages[0]["content"].split()) < 90, name


@pytest.mark.parametrize("name,texts,per_line", [
    ("bargaining", ["Alice gets $600,000, Bob gets $400,000.", "REJECT", "nonsense", "Alice gets 1, Bob gets 2"], 16),
    ("negotiation", ["OFFER $12,500", "OFFER $9,000", "REJECT", "nonsense"], 20),
    ("twenty_questions", ["Is it alive?", "Is it bigger than a breadbox?", "Is it used in the kitchen?"], 26),
    ("guess_my_city", ["Which continent is it on?", "What is the climate like?", "Is it a capital city?"], 34)])
def test_prompts_stay_short_in_policy_tokens(tiny_model_dir, name, texts, per_line):
    """Prompt length is the CPU cost driver: < 150 SmolLM2 tokens at the start, few tokens per move
    (each move shown as its own chat message pays ~5 tokens of role markup: hence the caps)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)

    def tokens(g):
        ids = tokenizer.apply_chat_template(g.observation(), add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    oracle = make_game(name, PAPER).oracle if name in TARGETS else None
    starts = []
    for seed in range(60):
        g = game(name, seed=seed, oracle=oracle)
        starts.append(tokens(g))
    assert max(starts) < 150
    g = game(name, seed=1, oracle=oracle)
    start = tokens(g)
    play(g, texts)
    assert (tokens(g) - start) / len(texts) <= per_line


# -- bargaining -------------------------------------------------------------------------
def test_bargaining_alternates_proposer_and_responder():
    g = bargain()
    assert g.to_move == "alice"
    play(g, ["Alice gets 60, Bob gets 40"])
    assert g.to_move == "bob" and g.observation()[-1] == {
        "role": "user", "content": "Round 1 of 20. Alice offers: Alice gets $60, Bob gets $40. Reply ACCEPT or REJECT."}
    play(g, ["REJECT"])
    assert g.round == 2 and g.to_move == "bob"
    play(g, ["Alice gets 45, Bob gets 55"])
    assert g.to_move == "alice"
    assert g.turns[1].move == {"type": "reject"} and g.turns[2].move["alice"] == 45


def test_bargaining_accept_in_round_one_pays_face_value():
    g = play(bargain(da=0.8, db=0.9), ["Alice gets $70, Bob gets $30", "ACCEPT"])
    assert g.outcome["deal"] and g.outcome["round"] == 1
    assert g.outcome["payoffs"] == {"alice": 70.0, "bob": 30.0}
    assert g.rewards == {"alice": 1.0, "bob": 0.0}


def test_bargaining_discounting_can_flip_the_winner():
    # Round 3: Alice keeps 0.9^2 * 45 = 36.45, Bob 0.8^2 * 55 = 35.2 -> Alice wins with the smaller share.
    g = play(bargain(da=0.9, db=0.8), ["Alice gets 50, Bob gets 50", "REJECT", "Alice gets 40, Bob gets 60",
                                        "REJECT", "Alice gets $45, Bob gets $55", "yes, I accept"])
    assert g.outcome["round"] == 3 and g.outcome["split"] == {"alice": 45.0, "bob": 55.0}
    assert g.outcome["payoffs"] == pytest.approx({"alice": 36.45, "bob": 35.2})
    assert g.rewards == {"alice": 1.0, "bob": 0.0}


def test_bargaining_equal_payoffs_tie():
    g = play(bargain(total=10_000, da=0.95, db=0.95), ["Alice gets 5,000, Bob gets 5,000", "accept"])
    assert g.rewards == {"alice": 0.5, "bob": 0.5}


def test_bargaining_invalid_proposal_passes_and_invalid_response_rejects():
    g = play(bargain(), ["I want most of it", "Alice gets 30, Bob gets 70", "hmm, let me think"])
    assert [t.valid for t in g.turns] == [False, True, False]
    assert g.turns[0].move == {"type": "pass"} and g.turns[2].move == {"type": "reject"}
    assert g.round == 3 and g.to_move == "alice" and not g.done
    assert g.outcome == {} and g.invalid == {"alice": 2, "bob": 0}


def test_bargaining_round_limit_means_no_deal_and_half_reward():
    g = play(bargain(rounds=3), ["Alice gets 90, Bob gets 10", "REJECT", "Alice gets 10, Bob gets 90", "REJECT",
                                  "Alice gets 80, Bob gets 20", "no"])
    assert g.done and not g.outcome["deal"] and g.outcome["round"] == 3
    assert g.outcome["payoffs"] == {"alice": 0.0, "bob": 0.0}
    assert g.rewards == {"alice": 0.5, "bob": 0.5}
    g.step("ACCEPT")  # after the end: ignored
    assert len(g.turns) == 6


def test_bargaining_prompt_states_loss_percent_not_delta():
    system = bargain(da=0.95, db=0.8).observation()[0]["content"]
    assert "5%" in system and "20%" in system
    assert "0.95" not in system and "0.8" not in system


def test_bargaining_proposals_outside_the_total_are_invalid():
    for text in ("Alice gets 120, Bob gets -20", "Alice gets 60, Bob gets 60", "60/40 split"):
        g = play(bargain(), [text])
        assert not g.turns[0].valid, text


# -- negotiation ------------------------------------------------------------------------
def test_negotiation_accept_gives_utilities():
    g = play(negotiate(va=100, vb=150), ["OFFER $130", "ACCEPT"])
    assert g.outcome["deal"] and g.outcome["price"] == 130 and g.outcome["round"] == 1
    assert g.outcome["payoffs"] == {"alice": 30.0, "bob": 20.0}
    assert g.rewards == {"alice": 1.0, "bob": 0.0}


def test_negotiation_counter_offer_replaces_the_standing_one():
    g = play(negotiate(va=100, vb=150), ["OFFER 140", "REJECT. OFFER 110", "I accept"])
    assert g.turns[1].move == {"type": "offer", "price": 110.0}
    assert g.outcome["price"] == 110 and g.outcome["round"] == 2
    assert g.outcome["payoffs"] == {"alice": 10.0, "bob": 40.0} and g.rewards == {"alice": 0.0, "bob": 1.0}


@pytest.mark.parametrize("texts,who", [(["WALK"], "alice"), (["OFFER 200", "I walk away to John"], "bob"),
                                        (["OFFER 200", "OFFER 90", "REJECT", "OFFER 95", "walk"], "alice")])
def test_negotiation_walk_away_at_any_turn_ends_without_deal(texts, who):
    g = play(negotiate(), texts)
    assert g.done and not g.outcome["deal"] and g.outcome["walked_away"] == who
    assert g.outcome["payoffs"] == {"alice": 0.0, "bob": 0.0} and g.rewards == {"alice": 0.5, "bob": 0.5}


def test_negotiation_invalid_move_rejects_without_counter():
    g = play(negotiate(), ["ACCEPT", "OFFER 90", "blah", "ACCEPT"])
    assert [t.valid for t in g.turns] == [False, True, False, False]  # nothing to accept at 0 and 3
    assert g.turns[2].move == {"type": "reject"} and g.standing is None and not g.done
    assert "Bob: OFFER $90." in g.observation()[-1]["content"]


def test_negotiation_round_limit_and_loss_for_price_below_value():
    g = play(negotiate(rounds=2), ["OFFER 150", "OFFER 100", "OFFER 140", "OFFER 105"])
    assert g.done and not g.outcome["deal"] and g.rewards == {"alice": 0.5, "bob": 0.5}
    g = play(negotiate(va=100, vb=120), ["OFFER 90", "ACCEPT"])
    assert g.outcome["payoffs"] == {"alice": -10.0, "bob": 30.0} and g.rewards == {"alice": 0.0, "bob": 1.0}


def test_negotiation_private_values():
    g = negotiate(va=80, vb=150)
    assert "$80" in g.observation()[0]["content"] and "$150" in g.observation()[0]["content"]
    play(g, ["OFFER 120"])
    bob = g.observation()[0]["content"]
    assert "$150" in bob and "$80" not in bob and "secret" in bob


# -- parsers ----------------------------------------------------------------------------
def test_amounts_and_split_parsing():
    assert [a for a, _, _ in amounts("$1,000,000 or 1.5k or 2 million, not R2 or 5kg")] == [1e6, 1500, 2e6]
    assert parse_split("Alice gets $600,000, Bob gets $400,000.", 1_000_000) == 600_000
    assert parse_split("$25 for Alice and $75 for Bob", 100) == 25
    assert parse_split("I propose Alice gets 80 and Bob gets 20", 100) == 80
    assert parse_split("Bob gets 30", 100) == 70
    assert parse_split("Alice gets 60%", 10_000) == 6_000
    assert parse_split("Alice gets 60, Bob gets 50", 100) is None
    assert parse_split("fifty-fifty", 100) is None
    assert parse_split("Alice gets $600,", 1_000_000) is None  # cut mid-number: no offer of $600


def test_decision_and_price_move_parsing():
    assert [parse_decision(t) for t in ("I accept.", "REJECT", "I don't accept", "No deal", "Deal!", "maybe")] == \
        ["accept", "reject", "reject", "reject", None, None]
    assert parse_price_move("OFFER $1,250") == ("offer", 1250.0)
    assert parse_price_move("I accept your offer of 100") == ("accept", None)
    assert parse_price_move("I reject your offer of 130.") == ("reject", None)
    assert parse_price_move("I reject your offer of 130, how about 110?") == ("offer", 110.0)
    assert parse_price_move("I won't walk away. OFFER 120") == ("offer", 120.0)
    assert parse_price_move("I'll sell to John instead") == ("walk", None)
    assert parse_price_move("OFFER 0") is None and parse_price_move("9" * 400) is None


@pytest.mark.parametrize("text,expected", [
    ("Acceptable answer: '1. Rejected, too low'", "reject"),  # "Acceptable" decides nothing
    ("The rules WON'T let me deal", None),  # "deal" is no answer
    ("I do not really accept this", "reject"),  # negation up to three words back
    ("Not bad. I accept", "accept"),  # a negation ends with its sentence
    ("I won't refuse: I accept", "accept"),  # a negated reject is skipped
    ("Acceptance is hard", None),
])
def test_decision_words_are_whole_and_negation_aware(text, expected):
    assert parse_decision(text) == expected


def test_a_price_needs_an_offer_cue_or_a_dollar_sign():
    assert parse_price_move("SURPRISE: 1.5 x 4.0 = 6.54") is None
    assert parse_price_move("I can do 150") is None
    assert parse_price_move("$120 works for me") == ("offer", 120.0)
    assert parse_price_move("Acceptable. OFFER 90") == ("offer", 90.0)


# -- Twenty Questions -------------------------------------------------------------------
@pytest.mark.parametrize("target,question", [
    ("teddy bear", "Is it a teddy bear?"), ("teddy bear", "is it a TEDDY-BEAR"), ("teddy bear", "A teddy?"),
    ("ice cream", "Could it be ice cream?"), ("washing machine", "Is it a washing machine, maybe?"),
    ("airplane", "Is it a plane?"), ("dog", "Is it one of the dogs?"), ("cherry", "Cherries?"),
    ("t-shirt", "Is it a T shirt?"), ("yo-yo", "Is it a yo yo?")])
def test_twenty_questions_whole_word_wins(target, question):
    oracle = CannedOracle("objects")
    g = play(questions("twenty_questions", target, oracle), ["Is it alive?", question])
    assert g.done and g.outcome == {"solved": True, "turns": 2, "env_return": -1, "invalid": {"agent": 0}}
    assert g.rewards == {"agent": 1.0} and g.turns[-1].move == {"env_reward": 0}
    assert oracle.asked == ["Is it alive?"]  # the winning question never reaches the oracle


@pytest.mark.parametrize("target,question", [
    ("teddy bear", "Is it a bear?"), ("dog", "Is it a hotdog?"), ("cat", "Is it a catalog?"),
    ("washing machine", "Is it a machine?"), ("pen", "Can you open it?"), ("car", "Is it a cart?")])
def test_twenty_questions_no_partial_or_substring_wins(target, question):
    g = play(questions("twenty_questions", target), [question])
    assert not g.done and g.turns[-1].speaker == "env" and g.turns[-1].text == "No."


@pytest.mark.parametrize("question", [
    "Is it a pen, a cup or a dog?", "Is it a dog or a cat?", "Dog, cat, horse?"])
def test_a_guess_names_one_object(question):
    g = play(questions("twenty_questions", "dog"), [question])
    assert not g.done and g.turns[-1].speaker == "env"
    g = play(g, ["Is it a dog? Or maybe a cat?"])  # only the first question counts
    assert g.done and g.outcome["solved"]


def test_candidate_list_names_the_target_in_every_instruction():
    cfg = dataclasses.replace(PAPER, twenty_questions=QuestionsConfig(max_turns=6, candidates=8))
    for seed in range(20):
        g = make_game("twenty_questions", cfg, oracle=canned("twenty_questions"))
        g.reset(seed)
        listed = g.setup["candidates"]
        assert len(set(listed)) == 8 and g.setup["object"] in listed
        chat = g.observation()
        assert "; ".join(listed) in chat[0]["content"] and "; ".join(listed) in chat[-1]["content"]
        play(g, ["Is it <one of them>?"])  # copying the format wins nothing
        assert not g.done and "; ".join(listed) in g.observation()[-1]["content"]
    plain = make_game("twenty_questions", PAPER, oracle=canned("twenty_questions"))
    plain.reset(3)
    assert set(plain.setup) == {"object", "max_turns"}  # candidates 0: the paper's game


def test_twenty_questions_failure_env_reward_and_invalid_questions():
    g = play(questions("twenty_questions", "dog", turns=3), ["Is it red?", "   ", "?!"])
    assert g.done and g.rewards == {"agent": 0.0}
    assert g.outcome == {"solved": False, "turns": 3, "env_return": -3, "invalid": {"agent": 2}}
    speakers = [t.speaker for t in g.turns]
    assert speakers == ["agent", "env"] * 3
    assert [t.text for t in g.turns if t.speaker == "env"][1:] == ["I don't know.", "I don't know."]
    assert g.turns[-1].move["answer"] == "unknown"


def test_question_history_is_a_multi_turn_chat_with_clipped_own_questions():
    g = play(questions("twenty_questions", "dog", turns=4), ["Is it alive?", "word " * 200, "?!"])
    assert g.observation() == [
        {"role": "system", "content": g.system_prompt()},
        {"role": "user", "content": "Example question: Is it an animal?\nNow ask your first question."},
        {"role": "assistant", "content": "Is it alive?"},
        {"role": "user", "content": "No. Ask your next question."},
        {"role": "assistant", "content": " ".join(["word"] * 12) + " ..."},
        {"role": "user", "content": "No. Ask your next question. (That was not a question.) I don't know. "
                                    "Ask your last question."}]
    assert "example" not in g.system_prompt()


def test_chat_roles_alternate_per_viewer_and_end_with_what_to_do_now():
    g = play(bargain(rounds=4), ["Alice gets 70, Bob gets 30", "REJECT", "Alice gets 40, Bob gets 60", "hmm"])
    alice, bob = g.chat(g.system_prompt(), "NOW", "alice"), g.chat(g.system_prompt(), "NOW", "bob")
    for chat in (alice, bob):
        roles = [m["role"] for m in chat]
        assert roles[0] == "system" and roles[-1] == "user" and chat[-1]["content"].endswith("NOW")
        assert all(a != b for a, b in zip(roles[1:], roles[2:]))
    assert [m["content"] for m in alice if m["role"] == "assistant"] == ["Alice gets $70, Bob gets $30"]
    assert [m["content"] for m in bob if m["role"] == "assistant"] == ["REJECT", "Alice gets $40, Bob gets $60"]
    assert "Alice gave no valid answer: rejected. Round 3 of 4." in bob[-1]["content"]
    assert "REJECT. Alice gave no valid answer: rejected." in alice[-1]["content"]  # own invalid move: a note
    assert g.observation()[-1]["content"].endswith("Example offer: Alice gets $60, Bob gets $40\nNow make your offer.")


# -- Guess My City ----------------------------------------------------------------------
@pytest.mark.parametrize("city,question,wins", [
    ("Lima, Peru", "What is the climate like?", False), ("Lima, Peru", "Is it Lima?", True),
    ("Lima, Peru", "Is it sublime?", False), ("Lima, Peru", "lima, peru!", True),
    ("Bogota, Colombia", "Is it Bogotá?", True), ("Rio de Janeiro, Brazil", "Is it Rio de Janeiro?", True),
    ("New York City, United States", "Is it New York?", True), ("Mumbai, India", "Is it Bombay?", True),
    ("Paris, France", "Is it in France?", False), ("Rome, Italy", "Is it chrome?", False)])
def test_guess_my_city_whole_word_city_match(city, question, wins):
    g = play(questions("guess_my_city", city), [question])
    assert g.done == wins and g.rewards == ({"agent": 1.0} if wins else {})


def test_guess_my_city_answers_with_the_kb_oracle_never_naming_the_city():
    g = questions("guess_my_city", "Lima, Peru", oracle=make_game("guess_my_city", PAPER).oracle)
    play(g, ["Which continent is it on?", "Is the city on the coast?", "Is it Paris?"])
    answers = [t.text for t in g.turns if t.speaker == "env"]
    assert answers[0] == "It is in South America." and answers[1].startswith("Yes")
    assert answers[2] == "No, it is not Paris."
    assert all("lima" not in a.lower() for a in answers)


# -- nothing crashes --------------------------------------------------------------------
MOVE_WORDS = st.sampled_from(["Alice", "Bob", "gets", "$", "1,000", "60", "40%", "1.5k", "million", "ACCEPT",
                              "reject", "OFFER", "walk", "John", "not", "no", "deal", "?", "teddy bear", "Lima"])
TEXTS = st.one_of(st.text(max_size=300), st.lists(MOVE_WORDS, max_size=12).map(" ".join),
                  st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FFF), max_size=60))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXTS, min_size=1, max_size=8), seed=st.integers(0, 10_000))
def test_no_string_crashes_any_game(texts, seed):
    for name in GAME_NAMES:
        g = game(name, seed=seed, oracle=canned(name))
        for text in texts:
            g.step(text)
        assert isinstance(g.observation(), list)
        if g.done:
            record = g.record()
            record.update(episode_id="x", policy={})
            validate_rollout(record, "fuzz")


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, total=st.sampled_from(TOTALS))
def test_no_string_crashes_a_parser(text, total):
    share = parse_split(text, total)
    assert share is None or 0 <= share <= total
    assert parse_decision(text) in (None, "accept", "reject")
    move = parse_price_move(text)
    assert move is None or move[0] in ("offer", "accept", "reject", "walk")
    assert move is None or move[0] != "offer" or move[1] > 0


def test_huge_and_odd_texts_step_fine():
    for text in ("x" * 200_000, "\x00\ud7ff\uffff", "9" * 5000, "Alice gets " + "9" * 400):
        for name in GAME_NAMES:
            g = game(name, seed=1, oracle=canned(name))
            g.step(text)
            assert len(g.turns) >= 1


def test_random_play_always_terminates():
    rng = random.Random(0)
    words = ["Alice gets 50, Bob gets 50", "REJECT", "OFFER 120", "nonsense", "Is it alive?"]
    for name in GAME_NAMES:
        g = game(name, seed=2, oracle=canned(name))
        for _ in range(200):
            if g.done:
                break
            g.step(rng.choice(words[:4] if name != "twenty_questions" else words))
        assert g.done, name
