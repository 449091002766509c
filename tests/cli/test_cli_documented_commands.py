"""The commands the READMEs show work as written: every ``leap`` command in a shell block
names a real subcommand, only options that command has, and files that exist; the cheap
ones (no service, no dataset, no long training) are run verbatim in a scratch
``LEAP_HOME``, with only their placeholders filled in."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from leap_cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted(ROOT.glob("*/**/README.md"))]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*(\.yaml)?$|<[^>]+>|^leap_\.\.\.$")
#: Run for real: what needs neither a service, a dataset nor more than seconds of training.
CHEAP = ("leap sweep", "leap data synth")
CHEAP_FLAGS = ("--dry-run", "--table-only", "synth")


def documented_commands() -> list[tuple[str, str]]:
    """``(document, command)`` for each ``leap`` line of a shell block, without its
    trailing comment and optional ``[...]`` parts."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
            for line in block.splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                command = re.sub(r"\s*\[[^\]]*\]", "", command)
                if command.startswith("leap "):
                    found.append((str(document.relative_to(ROOT)), command))
    return found


COMMANDS = documented_commands()


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (click) command the words name, and the words after it."""
    command: Any = typer.main.get_command(app)
    rest = words[1:]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        assert rest[0] in command.commands, f"no subcommand {rest[0]!r} in {' '.join(words)}"
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


def test_the_documents_show_leap_commands():
    assert len(COMMANDS) >= 20
    assert {document for document, _ in COMMANDS} >= {"README.md", "examples/sweeps/README.md"}


@pytest.mark.parametrize(("document", "command"), COMMANDS, ids=[c for _, c in COMMANDS])
def test_a_documented_command_names_real_options_and_files(document: str, command: str):
    words = shlex.split(command)
    target, rest = resolve(words)
    options = {opt for param in target.params for opt in (*param.opts, *param.secondary_opts)}
    for word in rest:
        name = word.split("=", 1)[0]
        if name.startswith("-"):
            assert name in options, f"{document}: {command}: {target.name} has no {name}"
        elif re.match(r"^(examples|benchmarks|docs)/", word):
            assert (ROOT / word).exists(), f"{document}: {command}: {word} does not exist"


RUNNABLE = [
    (document, command)
    for document, command in COMMANDS
    if command.startswith(CHEAP) and any(flag in command for flag in CHEAP_FLAGS)
]


@pytest.mark.process  # a fresh interpreter per command
@pytest.mark.parametrize(("document", "command"), RUNNABLE, ids=[c for _, c in RUNNABLE])
def test_a_cheap_documented_command_runs_verbatim(document: str, command: str, tmp_path):
    words = [
        str(tmp_path / "out") if PLACEHOLDER.search(word) else word for word in shlex.split(command)
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from leap_cli import app; sys.argv[0]='leap'; app()",
            *words[1:],
        ],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LEAP_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{document}: {command}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_there_are_cheap_commands_to_run():
    assert len(RUNNABLE) >= 4, RUNNABLE
