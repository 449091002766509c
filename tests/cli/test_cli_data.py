"""``leap data synth`` and ``leap data inspect``: output, JSON, plot, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leap_cli import app
from leap_core.data import omniglot_available, write_recordio

runner = CliRunner()
SYNTH = [
    "--identities",
    "10",
    "--test-identities",
    "5",
    "--cameras",
    "3",
    "--head",
    "2",
    "--tail-samples",
    "3",
    "--height",
    "16",
    "--width",
    "8",
    "--seed",
    "1",
]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "market"
    result = runner.invoke(app, ["data", "synth", str(out), *SYNTH])
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and str(out) in result.stdout
    return out


def inspect(*args: str) -> dict:
    result = runner.invoke(app, ["data", "inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_inspect_json_full_set(market: Path) -> None:
    summary = inspect("--format", "market1501", "--root", str(market))
    assert list(summary) == ["train", "query", "gallery"]
    train = summary["train"]
    assert train["num_ids"] == 10 and train["head_ids"] == 10 and train["tail_ids"] == 0
    assert train["tail_images"] == 0 and train["head_images"] == train["num_images"]
    assert train["min_images_per_id"] == 3 and train["max_images_per_id"] >= 16
    assert summary["query"] == {
        "num_ids": 5,
        "num_images": 5,
        "num_cams": summary["query"]["num_cams"],
        "skipped": {},
    }
    assert summary["gallery"]["num_ids"] == 6  # 5 identities + distractor pid 0
    assert summary["gallery"]["num_images"] == 5 * 6 + 10
    assert summary["gallery"]["skipped"] == {"junk": 5}


def test_inspect_json_reid_cut(market: Path, tmp_path: Path) -> None:
    plot = tmp_path / "hist.png"
    summary = inspect(
        "--format",
        "market1501",
        "--root",
        str(market),
        "--head",
        "2",
        "--tail-samples",
        "2",
        "--plot",
        str(plot),
    )
    train = summary["train"]
    assert (train["head_ids"], train["tail_ids"], train["tail_images"]) == (2, 8, 16)
    assert train["num_images"] == train["head_images"] + 16
    assert train["dropped_images"] == 8 and train["dropped_ids"] == 0
    assert train["median_images_per_id"] == 2.0
    assert train["one_image_ids"] == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_counts_identities_left_at_one_image(market: Path) -> None:
    args = ["--format", "market1501", "--root", str(market), "--head", "3", "--tail-samples", "1"]
    train = inspect(*args)["train"]
    assert (train["head_ids"], train["tail_ids"], train["one_image_ids"]) == (3, 7, 7)
    result = runner.invoke(app, ["data", "inspect", *args])
    assert result.exit_code == 0, result.output
    assert "7 of 10 identities have one image" in " ".join(result.stdout.split())


def test_inspect_face_cut_and_tables(market: Path) -> None:
    summary = inspect(
        "--format", "market1501", "--root", str(market), "--head", "2", "--tail-classes", "3"
    )
    assert summary["train"]["num_ids"] == 5 and summary["train"]["dropped_ids"] == 5
    assert summary["train"]["tail_images"] == 9  # the synthetic tail has 3 images each
    result = runner.invoke(
        app, ["data", "inspect", "--format", "market1501", "--root", str(market), "--head", "2"]
    )
    assert result.exit_code == 0
    assert "head_ids" in result.stdout and "junk: 5" in result.stdout


def test_synth_folders_layout(tmp_path: Path) -> None:
    out = tmp_path / "f"
    result = runner.invoke(app, ["data", "synth", str(out), *SYNTH, "--layout", "folders"])
    assert result.exit_code == 0, result.output
    summary = inspect("--format", "folders", "--root", str(out))
    assert summary["train"]["num_ids"] == 10 and summary["query"]["num_ids"] == 5


def one_line_error(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]


def test_errors_are_one_line_with_exit_code_2(market: Path, tmp_path: Path) -> None:
    root = ["data", "inspect", "--format", "market1501", "--root", str(market)]
    assert "head must be below the number of training identities (10)" in one_line_error(
        [*root, "--head", "10"]
    )
    assert "tail_samples must be an integer >= 1, got 0" in one_line_error(
        [*root, "--head", "2", "--tail-samples", "0"]
    )
    assert "tail_classes must be an integer >= 1, got 0" in one_line_error(
        [*root, "--head", "2", "--tail-classes", "0"]
    )
    assert "--tail-samples and --tail-classes need --head" in one_line_error(
        [*root, "--tail-samples", "3"]
    )
    broken = tmp_path / "broken"
    for folder in ("bounding_box_train", "query"):
        (broken / folder).mkdir(parents=True)
    assert "bounding_box_test: missing split folder" in one_line_error(
        ["data", "inspect", "--format", "market1501", "--root", str(broken)]
    )
    assert "out_dir:" in one_line_error(["data", "synth", str(market), *SYNTH])
    assert "head must be below identities (10)" in one_line_error(
        ["data", "synth", str(tmp_path / "new"), *SYNTH[:6], "--head", "10"]
    )


def test_skip_bad_names(market: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (copy / folder).mkdir(parents=True)
        for path in (market / folder).iterdir():
            (copy / folder / path.name).write_bytes(b"")
    for i in range(7):
        (copy / "query" / f"garbage_{i}.jpg").write_bytes(b"")
    line = one_line_error(["data", "inspect", "--format", "market1501", "--root", str(copy)])
    assert "7 file names that do not parse" in line and "and 2 more" in line
    summary = inspect("--format", "market1501", "--root", str(copy), "--skip-bad")
    assert summary["query"]["skipped"] == {"bad_name": 7}
    assert summary["query"]["num_images"] == 5


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    script = "import sys; from leap_cli import app; sys.argv = ['leap'] + sys.argv[1:]; app()"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "data",
            "inspect",
            "--format",
            "dukemtmc",
            "--root",
            str(tmp_path / "absent"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == f"error: root: {tmp_path / 'absent'} is not a directory"


def test_inspect_recordio_and_corrupt_record(tmp_path: Path, jpeg) -> None:
    rec = tmp_path / "train.rec"
    write_recordio(rec, [(float(i % 4), jpeg((i, i, i))) for i in range(10)])
    summary = inspect(
        "--format",
        "recordio",
        "--root",
        str(tmp_path),
        "--head",
        "1",
        "--tail-classes",
        "2",
        "--tail-samples",
        "2",
    )
    train = summary["train"]
    # classes 0 and 1 have 3 images, 2 and 3 have 2: head is class 0, tail classes 1 and 2
    assert (train["head_ids"], train["tail_ids"], train["num_images"]) == (1, 2, 7)
    assert train["skipped"] == {"non_image_record": 5}  # header + 4 identity records
    assert summary["query"]["num_images"] == 0
    data = bytearray(rec.read_bytes())
    data[0:4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    line = one_line_error(["data", "inspect", "--format", "recordio", "--root", str(rec)])
    assert line == f"error: {rec}: corrupt record 0 at offset 0: bad magic 0x00000000"


@pytest.mark.skipif(not omniglot_available(), reason="Omniglot copy not found")
def test_inspect_omniglot_random_heads() -> None:
    summary = inspect(
        "--format",
        "omniglot",
        "--head",
        "20",
        "--tail-samples",
        "3",
        "--head-selection",
        "random",
        "--seed",
        "2",
    )
    train = summary["train"]
    assert (train["num_ids"], train["head_ids"], train["head_images"]) == (964, 20, 400)
    assert train["tail_images"] == 944 * 3 and train["dropped_images"] == 964 * 20 - 400 - 2832
    assert summary["query"]["num_images"] == 659 and summary["gallery"]["num_cams"] == 20
