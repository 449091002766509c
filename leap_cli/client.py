"""``leap submit/status/list/cancel/retry/logs/sweep-status``: the HTTP client of the
training service.

It talks to the REST API only (httpx), never to the database or the broker, so it works
from any machine that can reach the API. The address and key come from ``LEAP_URL`` and
``LEAP_API_KEY``, or else from a YAML file with ``url:`` and ``key:``: ``$LEAP_CONFIG``,
``$LEAP_HOME/client.yaml`` (written by the embedded stack), ``~/.config/leap/client.yaml``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from leap_cli.common import fail, output_console
from leap_core.home import leap_home
from leap_core.yaml_files import read_yaml

TERMINAL = {"succeeded", "failed", "cancelled"}
console = output_console()


def config_files(start: Path | None = None) -> list[Path]:
    """Where the client looks for its address and key, in order: ``$LEAP_CONFIG``,
    ``$LEAP_HOME/client.yaml`` when ``LEAP_HOME`` is set, ``.leap/client.yaml`` in the
    working directory and each folder above it (as git finds ``.git``), then
    ``~/.config/leap/client.yaml``."""
    files = []
    if os.environ.get("LEAP_CONFIG"):
        files.append(Path(os.environ["LEAP_CONFIG"]))
    if os.environ.get("LEAP_HOME"):
        files.append(leap_home() / "client.yaml")
    here = (start or Path.cwd()).resolve()
    files += [folder / ".leap" / "client.yaml" for folder in (here, *here.parents)]
    files.append(Path.home() / ".config" / "leap" / "client.yaml")
    return list(dict.fromkeys(files))


def client_settings() -> tuple[str, str]:
    """``(url, key)``: environment first, then the first config file that exists."""
    url, key = os.environ.get("LEAP_URL"), os.environ.get("LEAP_API_KEY")
    for path in config_files():
        if url and key:
            break
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            url, key = url or data.get("url"), key or data.get("key")
    looked = ", ".join(str(path) for path in config_files())
    if not url:
        fail(f"no service address: set LEAP_URL, or url: in a client.yaml (looked in {looked})")
    if not key:
        fail(
            "no API key: set LEAP_API_KEY (from `leap admin create-key`), or key: in a "
            f"client.yaml (looked in {looked})"
        )
    return url.rstrip("/"), key


class Client:
    """A thin wrapper over the REST API that turns HTTP errors into one-line messages."""

    def __init__(self, url: str, key: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"},
            # Loading the CA bundle takes longer than a plain-HTTP request to a local API;
            # it is only needed, and always used, for https.
            verify=url.startswith("https://"),
        )

    @classmethod
    def from_environment(cls) -> Client:
        return cls(*client_settings())

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            fail(f"cannot reach {self.http.base_url}: {error}", code=1)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            fail(f"{response.status_code}: {detail}", code=1 if response.status_code >= 500 else 2)
        return response.json()

    def submit(self, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/v1/jobs", json=body, headers=headers)

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, after: int = 0) -> dict:
        return self.request(
            "GET", f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 500}
        )

    def submit_sweep(self, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/v1/sweeps", json=body, headers=headers)

    def sweep(self, sweep_id: str) -> dict:
        return self.request("GET", f"/v1/sweeps/{sweep_id}")


def describe(job: dict) -> str:
    """One line: status, progress, ETA and the headline metrics."""
    progress = job["progress"]
    parts = [f"{job['id']} {job['name']}: {job['status']}"]
    if progress.get("total_steps"):
        parts.append(
            f"step {progress.get('global_step') or 0}/{progress['total_steps']} "
            f"(epoch {progress.get('epoch') or 0}/{progress.get('epochs')})"
        )
    if progress.get("eta_seconds") is not None and job["status"] == "running":
        parts.append(f"ETA {progress['eta_seconds']:.0f}s")
    place = job.get("queue")
    if place is not None:
        ahead = place["position"]
        parts.append(
            f"{ahead} job starts before it" if ahead == 1 else f"{ahead} jobs start before it"
        )
        if place.get("held"):
            parts.append(f"held: {place['held']}")
    metrics = job.get("metrics") or {}
    for name in ("step_loss", "rank1", "mAP"):
        if name in metrics:
            parts.append(f"{name} {metrics[name]:.3g}")
    if job.get("error"):
        parts.append(job["error"].splitlines()[0][:200])
    return "  ".join(parts)


def milestone(job: dict) -> tuple[str, int | None]:
    """What a line to a pipe or file follows: the state and the epochs done, not every
    step or metric."""
    return job["status"], job["progress"].get("epoch")


def follow(
    poll: Callable[[], list[dict]],
    line: Callable[[dict], str],
    key: Callable[[dict], object],
    done: Callable[[list[dict]], bool],
    interval: float,
) -> list[dict]:
    """Poll until ``done``. On a terminal, one live block of lines updated in place, left
    showing the final state; to a pipe or file, a line for an item each time its ``key``
    changes (its state or epoch), so a log stays short and every line is news."""
    if console.is_terminal:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                items = poll()
                live.update(Text("\n".join(line(item) for item in items)), refresh=True)
                if done(items):
                    return items
                time.sleep(interval)
    shown: dict[int, object] = {}
    while True:
        items = poll()
        for index, item in enumerate(items):
            if shown.get(index) != (marker := key(item)):
                console.print(line(item), highlight=False)
                shown[index] = marker
        if done(items):
            return items
        time.sleep(interval)


def watch(client: Client, job_ids: list[str], interval: float = 2.0) -> list[dict]:
    """Follow the jobs until all are finished (see :func:`follow`); returns the final jobs."""
    return follow(
        lambda: [client.job(job_id) for job_id in job_ids],
        describe,
        milestone,
        lambda jobs: all(job["status"] in TERMINAL for job in jobs),
        interval,
    )


def submit(
    spec_file: Annotated[Path, typer.Argument(help="job spec (YAML or JSON)")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a spec field: path.to.field=value (repeatable)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="job name (default: the spec's)")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag the job (repeatable)")] = None,
    priority: Annotated[int, typer.Option(min=0, max=9, help="0-9, higher first")] = 5,
    idempotency_key: Annotated[
        str | None, typer.Option(help="makes a retried submission return the same job")
    ] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="follow until it ends")] = False,
) -> None:
    """Submit a job spec to the training service; prints the job id."""
    # The spec code (pydantic models, dataset readers) is loaded only by the commands that
    # read a spec, so status, list, logs and cancel start at once.
    from leap_core.config import SpecError, parse_spec
    from leap_core.spec_paths import apply_overrides

    try:
        data = read_yaml(spec_file, f"spec file {spec_file}", SpecError) or {}
        data = apply_overrides(data, overrides or [])
        parse_spec(data)  # fail here, naming the field, rather than after a round trip
    except SpecError as error:
        fail(str(error))
    if name:
        data["name"] = name
    client = Client.from_environment()
    job = client.submit({**data, "tags": tag or [], "priority": priority}, idempotency_key)
    typer.echo(job["id"])
    if watch_:
        final = watch(client, [job["id"]])[0]
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)


def status(
    job_id: Annotated[str, typer.Argument(help="job id")],
    watch_: Annotated[bool, typer.Option("--watch", help="refresh until it ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the full job as JSON")] = False,
) -> None:
    """Show a job: status, progress, ETA, latest metrics and its MLflow run."""
    client = Client.from_environment()
    if watch_:
        watch(client, [job_id])
        return
    job = client.job(job_id)
    if as_json:
        typer.echo(json.dumps(job, indent=2))
        return
    console.print(describe(job), highlight=False)
    if job["mlflow"]["url"]:
        console.print(f"MLflow run: {job['mlflow']['url']}", highlight=False)


def list_jobs(
    status_: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
    tag: Annotated[str | None, typer.Option(help="only jobs with this tag")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    queue: Annotated[
        bool, typer.Option("--queue", help="your queued jobs in the order they will start")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the page as JSON")] = False,
) -> None:
    """List your jobs, newest first (or, with --queue, your queued jobs in the order they
    will start): id, status, progress or queue position, created, name."""
    params = {
        "limit": limit,
        **({"status": status_} if status_ else {}),
        **({"tag": tag} if tag else {}),
        **({"order": "queue"} if queue else {}),
    }
    page = Client.from_environment().request("GET", "/v1/jobs", params=params)
    if as_json:
        typer.echo(json.dumps(page, indent=2))
        return
    for job in page["items"]:
        fraction = job["progress"].get("fraction")
        shown = f"{fraction:.0%}" if fraction is not None else "-"
        if job.get("queue") is not None:  # a queued job: how many start before it
            shown = f"#{job['queue']['position']}"
        typer.echo(
            f"{job['id']}  {job['status']:<10} {shown:>5}  {job['created_at'][:19]}  {job['name']}"
        )


def cancel(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    job = Client.from_environment().request("POST", f"/v1/jobs/{job_id}/cancel")
    console.print(describe(job), highlight=False)


def retry(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Run a failed or cancelled job again, resuming from its last checkpoint."""
    job = Client.from_environment().request("POST", f"/v1/jobs/{job_id}/retry")
    console.print(describe(job), highlight=False)


def logs(
    job_id: Annotated[str, typer.Argument(help="job id")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the job ends")
    ] = False,
) -> None:
    """Print a job's state changes and log lines."""
    client = Client.from_environment()
    after = 0
    while True:
        page = client.events(job_id, after)
        for event in page["items"]:
            text = event["message"]
            if event["kind"] == "state":
                text = f"[{event['from_status'] or 'new'} -> {event['to_status']}] {text}"
            typer.echo(f"{event['at'][:19]}  {text}")
        after = page["next_after"]
        if not follow:
            return
        if not page["items"] and client.job(job_id)["status"] in TERMINAL:
            return
        if not page["items"]:
            time.sleep(1.0)


def sweep_body(sweep_file: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``POST /v1/sweeps`` body for a local sweep file. It is read and every cell is
    validated with the code ``leap sweep`` runs (so a typo fails here, naming the cell and
    field, before a round trip), and a ``base`` that names a spec file is inlined from this
    machine, relative to the sweep file: the server cannot read the client's files."""
    from leap_core.sweeps.grid import base_mapping, expand
    from leap_core.sweeps.sweepfile import load_sweep

    sweep, folder = load_sweep(sweep_file)
    expand(sweep, folder, overrides)
    body = sweep.model_dump(mode="json", exclude_unset=True)
    body["base"] = base_mapping(sweep, folder)
    if overrides:
        body["overrides"] = overrides
    return body


def describe_cell(cell: dict) -> str:
    """One line per cell: id, job, status and, once known, rank-1 and mAP."""
    metrics = cell.get("metrics") or {}
    shown = "  ".join(f"{name} {metrics[name]:.1%}" for name in ("rank1", "mAP") if name in metrics)
    return f"{cell['cell']}  {cell['job_id']}  {cell['status']}  {shown}".rstrip()


def describe_sweep(sweep: dict) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in sweep["counts"].items() if n)
    return f"sweep {sweep['id']} {sweep['name']}: {sweep['status']} ({counts})"


def print_sweep_table(sweep: dict) -> None:
    """The paper-format table (rendered from its Markdown) under a line saying what it
    covers, so a partial table is never mistaken for the final one."""
    table = sweep["table"]
    console.print(f"table: {table['note']}", highlight=False, soft_wrap=True)
    if table["markdown"]:
        console.print(Markdown(table["markdown"]))


def watch_sweep(client: Client, sweep_id: str, interval: float = 5.0, echo: bool = True) -> dict:
    """Follow the sweep's cells until every job has finished (see :func:`follow`; quiet
    when ``echo`` is off, e.g. for JSON output); returns the final sweep."""
    latest: dict[str, dict] = {}

    def poll() -> list[dict]:
        latest["sweep"] = client.sweep(sweep_id)
        return list(latest["sweep"]["cells"])

    def finished(_cells: list[dict]) -> bool:
        return latest["sweep"]["status"] not in ("queued", "running")

    if not echo:
        while not finished(poll()):
            time.sleep(interval)
        return latest["sweep"]
    follow(poll, describe_cell, lambda cell: cell["status"], finished, interval)
    return latest["sweep"]


def submit_sweep(
    sweep_file: Path,
    overrides: dict[str, Any] | None = None,
    *,
    tags: list[str] | None = None,
    priority: int = 5,
    idempotency_key: str | None = None,
    follow: bool = False,
) -> str:
    """Submit a sweep file to the service (``POST /v1/sweeps``: one job per cell) and print
    the sweep id; ``overrides`` (dotted field: value, as ``leap sweep --set`` parses them)
    apply to every cell over the axes. With ``follow``, watch the cells to the end, print
    the table, and exit 1 unless every cell succeeded. Returns the sweep id."""
    from leap_core.sweeps.sweepfile import SweepError

    try:
        body = sweep_body(sweep_file, overrides)
    except SweepError as error:
        fail(str(error))
    client = Client.from_environment()
    sweep = client.submit_sweep({**body, "tags": tags or [], "priority": priority}, idempotency_key)
    typer.echo(sweep["id"])
    if follow:
        final = watch_sweep(client, sweep["id"])
        console.print(describe_sweep(final), highlight=False)
        print_sweep_table(final)
        if final["status"] != "succeeded":
            raise typer.Exit(1)
    return sweep["id"]


def sweep_status(
    sweep_id: Annotated[str, typer.Argument(help="sweep id")],
    watch_: Annotated[bool, typer.Option("--watch", help="follow until every job ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the full sweep as JSON")] = False,
) -> None:
    """Show a sweep: its cells' jobs and states, and the results table (partial until every
    cell has succeeded)."""
    client = Client.from_environment()
    if watch_:
        sweep = watch_sweep(client, sweep_id, echo=not as_json)
    else:
        sweep = client.sweep(sweep_id)
        if not as_json:
            for cell in sweep["cells"]:
                console.print(describe_cell(cell), highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(sweep, indent=2))
    else:
        console.print(describe_sweep(sweep), highlight=False)
        print_sweep_table(sweep)
    if watch_ and sweep["status"] != "succeeded":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the service commands (and ``leap admin``) to the ``leap`` app."""
    from leap_cli.admin import app as admin_app

    for name, command in [
        ("submit", submit),
        ("status", status),
        ("list", list_jobs),
        ("cancel", cancel),
        ("retry", retry),
        ("logs", logs),
        ("sweep-status", sweep_status),
    ]:
        app.command(name)(command)  # type: ignore[type-var]  # typer's TypeVar vs. a loop
    app.add_typer(admin_app, name="admin")
