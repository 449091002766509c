"""The command line's tests use the library suites' fixtures: images for ``leap data`` and
the tiny synthetic spec for ``leap train``."""

from tests.data.conftest import jpeg, make_files, make_images
from tests.training.conftest import synthetic_root, tiny_spec

__all__ = ["jpeg", "make_files", "make_images", "synthetic_root", "tiny_spec"]
