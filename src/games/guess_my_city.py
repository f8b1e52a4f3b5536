"""Guess My City (docs/method.md §3.4): guess a hidden large world city with free-form questions.

The oracle answers in one short sentence that never names the city.
"""
from __future__ import annotations

from src.games.base import REGISTRY
from src.games.questions import QuestionGame


@REGISTRY.register
class GuessMyCity(QuestionGame):
    name = "guess_my_city"
    domain = "cities"
    target_key = "city"
    rules = ("Let's play Guess My City. I am thinking of a large city somewhere in the world. Ask "
             "one question per turn (country, climate, food, landmarks...) and I answer in one "
             "short sentence. You win when a question names the city. You have {turns} questions.\n"
             "Reply with one short question.")
    example = "Is it in Europe?"
    kind = "cities"
