"""The registered games' names, in the order reports list them.

Apart from src.games so that code which only names games (``--game`` parsing, params
validation, report order) does not import the games, their oracles and models: the intention
stages then depend on this file, not on every game's code. tests/test_games.py checks it against
the registry, tests/test_dvc_declarations.py against params.yaml's ``games.names``.
"""
GAME_NAMES = ("bargaining", "negotiation", "twenty_questions", "guess_my_city")
