"""What following jobs prints: to a pipe or file, one line per state change or epoch and
nothing wrapped; on a terminal, one block updated in place, left at the final state."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from rich.console import Console

from leap_cli import client as client_module
from leap_cli.client import describe, follow, milestone
from leap_cli.common import output_console
from leap_cli.demo import variants

ROOT = Path(__file__).resolve().parents[2]


def job(status: str, epoch: int | None, step: int, loss: float | None = None) -> dict:
    return {
        "id": "f" * 32,
        "name": "demo synthetic <H10,S5> LEAP-CF seed0 with a name long enough to wrap at eighty",
        "status": status,
        "progress": {"epoch": epoch, "epochs": 2, "global_step": step, "total_steps": 8},
        "metrics": {} if loss is None else {"step_loss": loss},
        "error": None,
    }


POLLS = [
    [job("queued", None, 0)],
    [job("running", 0, 1, 5.0)],
    [job("running", 0, 2, 4.0)],  # a step: news on a terminal, not in a log
    [job("running", 0, 3, 3.5)],
    [job("running", 1, 4, 3.0)],  # an epoch done
    [job("running", 1, 6, 2.5)],
    [job("succeeded", 2, 8, 2.0)],
]


def replay(console: Console, monkeypatch) -> list[dict]:
    monkeypatch.setattr(client_module, "console", console)
    polls = iter(POLLS)
    return follow(
        lambda: next(polls),
        describe,
        milestone,
        lambda jobs: jobs[0]["status"] == "succeeded",
        interval=0.0,
    )


def test_to_a_pipe_one_unwrapped_line_per_state_or_epoch(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, width=1000, soft_wrap=True)
    assert replay(console, monkeypatch)[0]["status"] == "succeeded"
    lines = out.getvalue().splitlines()
    assert lines == [describe(POLLS[i][0]) for i in (0, 1, 4, 6)]
    assert all(len(line) > 80 for line in lines)  # none cut at 80 columns


def test_on_a_terminal_one_block_updated_in_place(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, color_system=None)
    replay(console, monkeypatch)
    screen = out.getvalue()
    assert "\x1b[2K" in screen and "\x1b[1A" in screen  # lines erased and redrawn in place
    final = screen.rsplit("\x1b[?25h", 1)[0].rstrip()  # before the cursor is shown again
    assert final.endswith("succeeded  step 8/8 (epoch 2/2)  step_loss 2")  # the final state


def test_output_to_a_pipe_is_never_wrapped():
    console = output_console()  # pytest's captured stdout is not a terminal
    assert (console.is_terminal, console.width, console.soft_wrap) == (False, 1000, True)


def test_demo_jobs_are_named_by_what_they_are():
    spec = yaml.safe_load((ROOT / "examples" / "tiny_synthetic.yaml").read_text())
    names = {method: body["name"] for method, body in variants(spec).items()}
    assert names == {
        "CosFace": "demo synthetic <H10,S5> CosFace seed0",
        "LEAP-CF": "demo synthetic <H10,S5> LEAP-CF seed0",
    }


def test_a_queued_jobs_line_says_how_many_start_before_it_and_why_it_is_held():
    waiting = {**job("queued", None, 0), "queue": {"position": 3, "held": None}}
    assert describe(waiting).endswith(": queued  step 0/8 (epoch 0/2)  3 jobs start before it")
    held = {**waiting, "queue": {"position": 1, "held": "2 of the owner's jobs are running"}}
    assert describe(held).endswith(
        "1 job starts before it  held: 2 of the owner's jobs are running"
    )
