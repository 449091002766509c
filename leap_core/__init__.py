"""LEAP core: margin heads, the feature cloud and the criterion that joins them.

A plain PyTorch library: it imports no web, queue or database framework, so it can be used
on its own in any training script.
"""

__version__ = "0.1.0"
