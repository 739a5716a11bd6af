"""CI runs the README's test command: the install and pytest line of ``.ci/run`` is the README's, word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "pytest" in line]
    assert len(commands) >= 1, "README.md shows no test command"
    return commands[0].strip()


def test_ci_runs_the_readme_test_command() -> None:
    command = _readme_test_command()
    # the README creates the venv in its command; .ci/run creates it first (and upgrades pip) and then runs the rest
    venv, _, rest = command.partition(" && ")
    assert venv == "python3 -m venv .venv", command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert venv in ci_lines
    assert rest in ci_lines, f".ci/run does not run the README's test command: {rest}"
