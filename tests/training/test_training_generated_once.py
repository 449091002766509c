"""A generated dataset is made once, whoever asks for it at the same time: real processes
started together on an empty folder, a generator kept waiting by the lock, and a complete
copy that a late generator must not replace while a reader lists it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import SYNTHETIC_DONE, ensure_synthetic, install_generated
from leap_core.locks import file_lock
from tests.tiny import tiny_job

#: Real processes started together (the process-level tests; not in `make test-fast`).
pytestmark = pytest.mark.process

ROOT = Path(__file__).resolve().parents[2]

#: Waits for the start signal, then asks for the dataset; prints whether it generated.
ASK = """
import json, sys, time
from pathlib import Path
from leap_core.config import parse_spec
from leap_core.data.synthetic_cache import ensure_synthetic

go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
calls = []
spec = parse_spec(json.loads(sys.argv[1]))
root = ensure_synthetic(spec.dataset, progress=lambda done, total: calls.append(done))
print(json.dumps({"root": str(root), "generated": bool(calls)}))
"""


def _spec_json(root: Path) -> str:
    job = tiny_job()
    job["dataset"]["root"] = str(root)
    return json.dumps(job)


def _ask(root: Path, go: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ASK, _spec_json(root), str(go)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("*") if p.is_file()}


def test_two_processes_asking_at_once_generate_it_once(tmp_path):
    root, go = tmp_path / "data" / "tiny", tmp_path / "go"
    askers = [_ask(root, go) for _ in range(2)]
    time.sleep(2.0)  # both interpreters up and polling for the signal
    go.touch()
    answers = [json.loads(asker.communicate(timeout=120)[0]) for asker in askers]
    assert [asker.returncode for asker in askers] == [0, 0]
    assert {answer["root"] for answer in answers} == {str(root)}
    assert sorted(answer["generated"] for answer in answers) == [False, True]
    assert (root / SYNTHETIC_DONE).is_file()
    # Nothing but the dataset and the lock is left beside it (no staging copy).
    assert sorted(path.name for path in root.parent.iterdir()) == [".tiny.lock", "tiny"]


def test_a_second_generator_waits_for_the_lock_and_then_finds_the_copy(tmp_path):
    root, go = tmp_path / "data" / "tiny", tmp_path / "go"
    go.touch()
    with file_lock(root.parent / ".tiny.lock"):
        asker = _ask(root, go)
        time.sleep(3.0)
        assert asker.poll() is None  # still waiting
        assert sorted(path.name for path in root.parent.iterdir()) == [".tiny.lock"]
    answer = json.loads(asker.communicate(timeout=120)[0])
    assert answer == {"root": str(root), "generated": True}
    assert (root / SYNTHETIC_DONE).is_file()


def test_a_complete_copy_is_never_replaced_under_a_reader(tmp_path):
    """The race of the fault runs, replayed without the lock (as from another machine on a
    shared folder): a reader lists the complete copy, a late generator finishes its own.
    The complete copy stays, file for file (same inodes), and the late one is not used."""
    spec = parse_spec(json.loads(_spec_json(tmp_path / "tiny")))
    root = ensure_synthetic(spec.dataset)
    listed = _files(root)
    late = tmp_path / "late"
    ensure_synthetic(parse_spec(json.loads(_spec_json(late))).dataset)
    assert install_generated(late, root) is False
    assert _files(root) == listed
    assert late.is_dir()  # left to its generator to discard
    # An incomplete leftover (no marker) is what a generator may replace.
    leftover = tmp_path / "leftover"
    (leftover / "bounding_box_train").mkdir(parents=True)
    assert install_generated(late, leftover) is True
    assert (leftover / SYNTHETIC_DONE).is_file() and not late.exists()
