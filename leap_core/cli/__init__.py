"""The ``leap`` command line: one Typer app; each area adds its sub-app here."""

import typer

from leap_core.cli import client
from leap_core.cli.data import app as data_app
from leap_core.cli.sweep import sweep
from leap_core.cli.train import evaluate, train

app = typer.Typer(
    name="leap",
    help="LEAP: deep feature learning on long-tailed identity data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.command("train")(train)
app.command("eval")(evaluate)
app.command("sweep")(sweep)
client.register(app)
