"""Knowledge bases (well-formed, facts never leak the city), the KB oracle on the real packaged
embedder, and the LLM oracle's post-filter on a tiny random Llama."""
import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from src.config import defaults
from src.intention.embedder import PACKAGED_EMBEDDER
from src.oracles import OracleConfig, get_oracle
from src.oracles.kb import OPEN, KBOracle, first_question, load_kb, normalize
from src.oracles.llm import LLMOracle
from src.games.base import prepare_moves
from src.games.twenty_questions import TwentyQuestions

OBJECTS, CITIES = load_kb("objects"), load_kb("cities")
SIZES = {"tiny", "small", "medium", "large", "huge"}
ORACLE = defaults(OracleConfig, "games.oracle")


@pytest.fixture(scope="module")
def objects_oracle():
    return get_oracle("objects", ORACLE)


@pytest.fixture(scope="module")
def cities_oracle():
    return get_oracle("cities", ORACLE)


# -- the knowledge bases ----------------------------------------------------------------
@pytest.mark.parametrize("kb", [OBJECTS, CITIES], ids=["objects", "cities"])
def test_entries_have_distinct_spellings_that_name_only_themselves(kb):
    owner = {}
    for entry in kb.entries.values():
        forms = [normalize(s) for s in entry.spellings]
        assert forms and all(forms) and len(set(forms)) == len(forms), entry.name  # no redundant spelling
        assert kb.named_in(entry.name.split(",")[0], entry.name), entry.name
        for form in forms:
            assert form not in owner, (form, owner.get(form), entry.name)
            owner[form] = entry.name
    # Naming one target must never name another ("hot dog" would win "dog").
    for spelling, name in owner.items():
        assert [n for n in kb.names if kb.named_in(spelling, n)] == [name], spelling


@pytest.mark.parametrize("kb", [OBJECTS, CITIES], ids=["objects", "cities"])
def test_attribute_questions_name_no_target(kb):
    for question in kb.questions:
        assert not [n for n in kb.names if kb.named_in(question.text, n)], question
        assert kb.guessed(question.text) is None, question


def test_objects_kb_size_categories_and_facts():
    raw_categories = {e.facts["category"] for e in OBJECTS.entries.values()}
    assert len(OBJECTS.names) >= 140 and 13 <= len(raw_categories) <= 17
    assert {"teddy bear", "ice cream", "washing machine", "airplane"} <= set(OBJECTS.names)
    assert "plane" in OBJECTS.entries["airplane"].spellings
    attributes = {q.attribute for q in OBJECTS.questions if q.attribute != OPEN}
    for entry in OBJECTS.entries.values():
        assert entry.facts["size"] in SIZES
        assert all(entry.facts[a] in (True, False, None) for a in attributes), entry.name
        assert not (entry.facts["man_made"] and entry.facts["living"]), entry.name
    dog, hammer = OBJECTS.entries["dog"].facts, OBJECTS.entries["hammer"].facts
    assert dog["living"] and dog["mammal"] and not dog["man_made"] and not dog["edible"]
    assert hammer["tool"] and hammer["made_of_metal"] and hammer["fits_in_hand"] and not hammer["living"]


def test_cities_kb_facts_and_every_sentence_hides_the_city():
    assert len(CITIES.names) >= 95
    continents = set()
    for name, entry in CITIES.entries.items():
        assert re.fullmatch(r"[^,]+, [^,]+", name), name
        assert -90 <= entry.facts["lat"] <= 90 and -180 <= entry.facts["lon"] <= 180
        continents.add(entry.facts["continent"])
        for attribute in CITIES.templates:
            if attribute == OPEN:
                continue
            answer = CITIES.answer(name, attribute)
            assert answer.text.endswith(".") and len(answer.text.split()) <= 30, (name, answer.text)
            assert not CITIES.named_in(answer.text, name), (name, answer.text)
        for other in CITIES.names[:5]:
            guess = CITIES.guess_answer(name, f"Is it {other}?")
            assert guess is None or not CITIES.named_in(guess.text, name)
    assert {"Asia", "Europe", "Africa", "North America", "South America", "Oceania"} <= continents
    lima = CITIES.entries["Lima, Peru"].facts
    assert lima["country"] == "Peru" and lima["capital"] and lima["coastal"] and lima["language"] == "Spanish"
    assert CITIES.answer("Lima, Peru", "hemispheres").text == \
        "It is in the Southern and Western hemispheres."


# -- the KB oracle (real packaged embedder) ---------------------------------------------
OBJECT_CASES = [
    ("dog", "Is it alive?", "Yes."), ("dog", "Is it an animal?", "Yes."), ("dog", "Is it a living thing?", "Yes."),
    ("dog", "Is it made of metal?", "No."), ("dog", "Is it a cat?", "No."), ("hammer", "Is it an animal?", "No."),
    ("hammer", "Is it a tool?", "Yes."), ("apple", "Can you eat it?", "Yes."), ("fork", "Is it made of metal?", "Yes."),
    ("bicycle", "Does it have wheels?", "Yes."), ("shark", "Is it a mammal?", "No."),
    ("television", "Does it have a screen?", "Yes."), ("television", "Is it electronic?", "Yes."),
    ("teddy bear", "Is it soft?", "Yes."), ("airplane", "Can it fly?", "Yes."),
    ("car", "Is it bigger than a breadbox?", "Yes."), ("key", "Can you hold it in one hand?", "Yes."),
    ("dog", "What is it?", "I don't know."), ("dog", "xq zv blorp", "I don't know."),
    ("car", "Is it red?", "I don't know."),  # cars come in any colour
]


def test_kb_oracle_answers_objects(objects_oracle):
    answers = objects_oracle.answer_many([(t, q) for t, q, _ in OBJECT_CASES])
    assert [a.text for a in answers] == [want for _, _, want in OBJECT_CASES]
    classes = {"Yes.": "yes", "No.": "no", "I don't know.": "unknown"}
    assert all(a.move["answer"] == classes[a.text] for a in answers)


def test_kb_oracle_answers_cities_without_naming_them(cities_oracle):
    cases = [("Lima, Peru", "Which continent is it on?"), ("Lima, Peru", "Is it on the coast?"),
             ("Tokyo, Japan", "Is it a capital city?"), ("Chicago, United States", "Is it the capital?"),
             ("Montreal, Canada", "What language do people speak there?"),
             ("Bogota, Colombia", "Is it high up in the mountains?"), ("Lima, Peru", "Is it Paris?"),
             ("Cairo, Egypt", "Which river flows through it?"), ("Lima, Peru", "What is your name?")]
    answers = [a.text for a in cities_oracle.answer_many(cases)]
    assert "South America" in answers[0] and "Lima" not in answers[0]
    assert answers[1].startswith("Yes") and answers[2].startswith("Yes") and answers[3].startswith("No")
    assert "French" in answers[4] and "2,640 metres" in answers[5]
    assert answers[6] == "No, it is not Paris." and "Nile" in answers[7] and answers[8] == "I don't know."
    for (city, _), text in zip(cases, answers):
        assert not CITIES.named_in(text, city), text


def test_similarity_floor_and_question_cache(monkeypatch):
    strict = KBOracle(OBJECTS, PACKAGED_EMBEDDER, similarity_floor=0.99)
    asked = ["Is it alive?", "Is it perhaps alive, do you think, or rather not at all?"]
    assert [a.text for a in strict.answer_many([("dog", q) for q in asked])] == ["Yes.", "I don't know."]
    monkeypatch.setattr("src.oracles.kb.embed", lambda *a, **k: pytest.fail("question was not cached"))
    assert strict.answer("cat", "Q2: Is it alive? I wonder").text == "Yes."  # same first question


def test_oracles_are_shared_per_process():
    assert get_oracle("objects", ORACLE) is get_oracle("objects", ORACLE)
    looser = dataclasses.replace(ORACLE, similarity_floor=0.5)
    assert get_oracle("objects", looser) is not get_oracle("objects", ORACLE)


def test_first_question_and_normalize():
    assert first_question("Q3: Is it alive? Or is it a rock?") == "Is it alive?"
    assert first_question("  Question 2) is it big  ") == "is it big"
    assert normalize("Bogotá, D.C.! Teddy-Bear's") == "bogota d c teddy bears"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400))
def test_text_helpers_never_crash(text):
    first_question(text)
    normalize(text)
    OBJECTS.guessed(text)
    CITIES.guess_answer("Lima, Peru", text)
    assert isinstance(OBJECTS.named_in(text, "teddy bear"), bool)


# -- the LLM oracle ---------------------------------------------------------------------
class ScriptedPolicy:
    def __init__(self, replies):
        self.replies = replies

    def generate(self, conversations, sampling, seed):
        assert all(c[0]["role"] == "system" for c in conversations)
        return self.replies[:len(conversations)]


def test_llm_oracle_post_filter():
    yes_no = LLMOracle(OBJECTS, "", policy=ScriptedPolicy(["Yes, it is.", "no", "Maybe?"]))
    answers = yes_no.answer_many([("dog", "Is it alive?"), ("dog", "Is it blue?"), ("dog", "Is it big?")])
    assert [(a.text, a.move["answer"]) for a in answers] == [("Yes.", "yes"), ("No.", "no"),
                                                              ("I don't know.", "unknown")]
    cities = LLMOracle(CITIES, "", policy=ScriptedPolicy(["LIMA is in Peru. It is nice.", "Lima-city!", ""]))
    answers = cities.answer_many([("Lima, Peru", "Where is it?"), ("Lima, Peru", "Name?"),
                                  ("Lima, Peru", "Is it Paris?"), ("Lima, Peru", "Hi")])
    assert answers[0].text == "this city is in Peru."
    assert answers[2].text == "No, it is not Paris."  # an outright wrong guess skips the model
    assert all(not CITIES.named_in(a.text, "Lima, Peru") for a in answers)
    assert answers[3].text == "I don't know."


def test_llm_oracle_with_tiny_random_llama(tiny_model_dir):
    oracle = LLMOracle(OBJECTS, str(tiny_model_dir), device="cpu", max_new_tokens=8)
    for answer in oracle.answer_many([("dog", "Is it alive?"), ("hammer", "Is it soft?")]):
        assert answer.text in ("Yes.", "No.", "I don't know.")
        assert answer.move["answer"] in ("yes", "no", "unknown")
    cities = LLMOracle(CITIES, "", policy=oracle.policy)
    answer = cities.answer("Lima, Peru", "Which continent is it on?")
    assert not CITIES.named_in(answer.text, "Lima, Peru")


def test_a_lock_step_step_primes_the_oracle_in_one_call():
    """The rollout loop prepares a step's moves together: one oracle model call answers every
    episode's question, and a winning guess or a non-question costs no model work."""
    calls = []

    class Counting(ScriptedPolicy):
        def generate(self, conversations, sampling, seed):
            calls.append(len(conversations))
            return ["Yes."] * len(conversations)

    oracle = LLMOracle(OBJECTS, "", policy=Counting([]))
    games = []
    for seed in range(4):
        game = TwentyQuestions(oracle, max_turns=3)
        game.reset(seed)
        games.append(game)
    target = games[3].setup["object"]
    texts = ["Is it alive?", "Is it bigger than a car?", " ?! ", f"Is it {target}?"]
    prepare_moves(games, texts)
    assert calls == [2]
    for game, text in zip(games, texts):
        game.step(text)
    assert calls == [2]  # answered from the primed batch
    assert [g.turns[1].text for g in games[:2]] == ["Yes.", "Yes."]
    assert games[3].outcome["solved"]
