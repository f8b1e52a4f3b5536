"""Twenty Questions (docs/method.md §3.3): guess a hidden everyday object with yes/no questions.

The oracle answers "Yes." / "No." / "I don't know." (env move ``{"answer": "yes"|"no"|"unknown"}``).
"""
from __future__ import annotations

from src.games.base import REGISTRY
from src.games.questions import QuestionGame


@REGISTRY.register
class TwentyQuestions(QuestionGame):
    name = "twenty_questions"
    domain = "objects"
    target_key = "object"
    rules = ("Let's play 20 Questions. I am thinking of an everyday object. Ask one yes/no "
             "question per turn and I answer Yes, No or I don't know. You win when a question "
             "names the object. You have {turns} questions.\n"
             "Reply with one short question.")
    example = "Is it an animal?"
    kind = "objects"
