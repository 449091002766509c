"""Fixture writers shared by the data-layer tests: small trees written to ``tmp_path``."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from PIL import Image


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (8, 16)) -> bytes:
    """A tiny solid-colour JPEG (width, height) as bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def make_files() -> Callable[[Path, Iterable[str]], list[Path]]:
    """Create empty files (name lists relative to a root); return their paths."""

    def write(root: Path, names: Iterable[str]) -> list[Path]:
        paths = []
        for name in names:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            paths.append(path)
        return paths

    return write


@pytest.fixture
def make_images() -> Callable[[Path, dict[str, tuple[int, int, int]]], None]:
    """Create tiny solid-colour JPEGs: ``{relative name: (r, g, b)}``."""

    def write(root: Path, images: dict[str, tuple[int, int, int]]) -> None:
        for name, colour in images.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(colour))

    return write


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    """The ``jpeg_bytes`` helper, for tests that embed images in other containers."""
    return jpeg_bytes
