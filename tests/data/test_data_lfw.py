"""LFW pairs files: the 10-fold header form and the pairsDevTest form."""

from __future__ import annotations

from pathlib import Path

import pytest

from leap_core.data import DatasetError, VerificationPair, read_lfw_pairs

PEOPLE = {"Ann_Lee": 3, "Bo_Chen": 2, "Cy_Diaz": 1, "Di_Eze": 1}


def write_people(root: Path, make_files) -> None:
    make_files(
        root, [f"{n}/{n}_{i:04d}.jpg" for n, count in PEOPLE.items() for i in range(1, count + 1)]
    )


def test_folds_form(tmp_path: Path, make_files) -> None:
    write_people(tmp_path, make_files)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(
        "2\t1\nAnn_Lee\t1\t2\nCy_Diaz\t1\tDi_Eze\t1\nBo_Chen\t1\t2\nAnn_Lee\t3\tBo_Chen\t2\n"
    )
    pairs = read_lfw_pairs(tmp_path, pairs_file)
    img = lambda n, i: str(tmp_path / n / f"{n}_{i:04d}.jpg")  # noqa: E731
    assert pairs.num_folds == 2 and pairs.pairs_per_fold == 1
    assert pairs.pairs == (
        VerificationPair(img("Ann_Lee", 1), img("Ann_Lee", 2), True, 0),
        VerificationPair(img("Cy_Diaz", 1), img("Di_Eze", 1), False, 0),
        VerificationPair(img("Bo_Chen", 1), img("Bo_Chen", 2), True, 1),
        VerificationPair(img("Ann_Lee", 3), img("Bo_Chen", 2), False, 1),
    )
    assert len(pairs.paths()) == 7


def test_dev_test_form(tmp_path: Path, make_files) -> None:
    write_people(tmp_path, make_files)
    pairs_file = tmp_path / "pairsDevTest.txt"
    pairs_file.write_text("2\nAnn_Lee 1 3\nBo_Chen 1 2\nAnn_Lee 2 Cy_Diaz 1\nBo_Chen 2 Di_Eze 1\n")
    pairs = read_lfw_pairs(tmp_path, pairs_file)
    assert pairs.num_folds == 1
    assert [(p.same, p.fold) for p in pairs.pairs] == [(True, 0), (True, 0), (False, 0), (False, 0)]


def test_missing_image_names_line_and_path(tmp_path: Path, make_files) -> None:
    write_people(tmp_path, make_files)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\t1\nAnn_Lee\t1\t4\nCy_Diaz\t1\tDi_Eze\t1\n")
    with pytest.raises(DatasetError, match=r"pairs\.txt line 2: missing image .*Ann_Lee_0004\.jpg"):
        read_lfw_pairs(tmp_path, pairs_file)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x\nA 1 2\n", r"line 1: header must be 'folds pairs' or 'pairs', got 'x'"),
        (
            "1\t2\nAnn_Lee 1 2\nAnn_Lee 1 Bo_Chen 1\n",
            r"announces 1 folds x 4 pairs = 4 lines, got 2",
        ),
        (
            "1\nAnn_Lee 1 Bo_Chen 1\nAnn_Lee 1 Bo_Chen 1\n",
            r"line 2: expected 'name i j \(matched\)'",
        ),
        ("1\nAnn_Lee 1 2\nAnn_Lee 1 2\n", r"line 3: expected 'name1 i name2 j \(mismatched\)'"),
        ("1\nAnn_Lee one 2\nAnn_Lee 1 Bo_Chen 1\n", r"line 2: expected"),
    ],
)
def test_malformed_pairs(tmp_path: Path, make_files, text: str, message: str) -> None:
    write_people(tmp_path, make_files)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_lfw_pairs(tmp_path, pairs_file)
