"""The ``leap`` command line: one Typer app; each area adds its sub-app here.

The top layer: it drives the library (``leap train``, ``leap sweep``, ``leap data``), talks to
the service over HTTP (``leap submit`` …), administers it (``leap admin``) and runs the
embedded stack (``python -m leap_cli.stack``).
"""

import typer

from leap_cli import client
from leap_cli.checkpoint import app as checkpoint_app
from leap_cli.data import app as data_app
from leap_cli.model import embed, export, search
from leap_cli.sweep import sweep
from leap_cli.train import evaluate, train

app = typer.Typer(
    name="leap",
    help="LEAP: deep feature learning on long-tailed identity data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(checkpoint_app, name="checkpoint")
app.command("train")(train)
app.command("eval")(evaluate)
app.command("sweep")(sweep)
app.command("embed")(embed)
app.command("search")(search)
app.command("export")(export)
client.register(app)
