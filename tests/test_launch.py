"""Games side by side (src/launch.py): a per-seed game stage run through the launcher with
launch.side_by_side > 1 becomes one process per game; every other stage runs as it is."""
import sys

from src.game_names import GAME_NAMES
from src.launch import OPTIONS, game_commands, run_side_by_side

SIDE_BY_SIDE = {**OPTIONS, "side_by_side": "2"}


def test_per_seed_game_stages_split_into_one_process_per_game():
    for module in ("stages.rollout", "stages.evaluate"):
        commands = game_commands(SIDE_BY_SIDE, [module, "--seed", "3"])
        assert commands == [[sys.executable, "-m", module, "--seed", "3", "--game", game]
                            for game in GAME_NAMES]


def test_other_stages_and_single_games_run_as_they_are():
    for stage in (["stages.train_offline", "--variant", "aria", "--seed", "0"],
                  ["stages.train_rm", "--seed", "0"], ["stages.train_online", "--seed", "0"],
                  ["stages.grad_variance", "--seed", "0", "--game", "bargaining"],
                  ["stages.rollout", "--seed", "0", "--game", "bargaining"]):
        assert game_commands(SIDE_BY_SIDE, stage) == [], stage
    assert game_commands(OPTIONS, ["stages.rollout", "--seed", "0"]) == []  # side_by_side 1
    several = {**SIDE_BY_SIDE, "processes": "2"}  # accelerate shares the episodes instead
    assert game_commands(several, ["stages.rollout", "--seed", "0"]) == []


def test_side_by_side_runs_every_command_and_reports_the_first_failure(tmp_path):
    ok = [[sys.executable, "-c", f"open(r'{tmp_path / str(i)}', 'w').write('x')"] for i in range(3)]
    assert run_side_by_side(ok, 2) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2"]
    failing = [[sys.executable, "-c", "import sys; sys.exit(3)"], *ok]
    assert run_side_by_side(failing, 1) == 3
