"""``python -m leap_cli``: the ``leap`` command, for launchers that start a module
(``torchrun -m leap_cli train SPEC``)."""

from leap_cli import app

app()
