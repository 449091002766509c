"""The CUDA tests use the training suite's tiny synthetic spec."""

from tests.training.conftest import synthetic_root, tiny_spec

__all__ = ["synthetic_root", "tiny_spec"]
