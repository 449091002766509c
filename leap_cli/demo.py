"""The demo: CosFace against LEAP-CF on the synthetic long-tailed set, through the REST API
of the running stack, as a user would do it with ``leap submit``."""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from rich.table import Table

from leap_cli.client import Client, watch
from leap_cli.common import output_console
from leap_core.config import JobSpec
from leap_core.run_names import dataset_label, long_tail_label, run_name
from leap_core.tracking.links import experiment_link

METRICS = [("rank1", "rank-1"), ("rank5", "rank-5"), ("mAP", "mAP"), ("mINP", "mINP")]


def variants(spec: dict) -> dict[str, dict]:
    """The same spec as the CosFace baseline and with the full LEAP feature cloud."""
    baseline = yaml.safe_load(yaml.safe_dump(spec))
    baseline["method"]["leap"] = {**baseline["method"].get("leap", {}), "mode": "off"}
    leap = yaml.safe_load(yaml.safe_dump(spec))
    leap["method"]["leap"] = {**leap["method"].get("leap", {}), "mode": "full"}
    # Named by what each job is ("demo synthetic <H10,S5> CosFace seed0"), not after the
    # spec file, whose name says LEAP-CF for both.
    for variant in (baseline, leap):
        variant["name"] = f"demo {run_name(JobSpec.model_validate(variant))}"
    return {"CosFace": baseline, "LEAP-CF": leap}


def comparison(jobs: dict[str, dict]) -> Table:
    spec = JobSpec.model_validate(next(iter(jobs.values()))["spec"])
    table = Table(
        title=f"retrieval on unseen identities ({dataset_label(spec)} "
        f"{long_tail_label(spec)}, seed {spec.train.seed})"
    )
    table.add_column("method")
    for _, label in METRICS:
        table.add_column(label, justify="right")
    table.add_column("job")
    for method, job in jobs.items():
        shown = [
            f"{job['metrics'][key]:.1%}"
            if math.isfinite(job["metrics"].get(key, math.nan))
            else "-"
            for key, _ in METRICS
        ]
        table.add_row(method, *shown, job["id"][:8])
    return table


def run_demo(spec_path: Path) -> int:
    console = output_console()
    client = Client.from_environment()
    spec = yaml.safe_load(spec_path.read_text())
    submitted = {}
    for method, body in variants(spec).items():
        job = client.submit({**body, "tags": ["demo"]})
        submitted[method] = job["id"]
        console.print(
            f"submitted {method}: POST /v1/jobs -> {job['id']} ({job['status']})", highlight=False
        )
    finished = watch(client, list(submitted.values()), interval=5.0)
    jobs = dict(zip(submitted, finished, strict=True))
    console.print(comparison(jobs))
    failed = [job for job in finished if job["status"] != "succeeded"]
    for job in failed:
        console.print(f"[red]{job['name']}: {job['status']}[/] {job.get('error') or ''}")
    for method, job in jobs.items():
        console.print(f"{method} MLflow run: {job['mlflow']['url'] or '-'}", highlight=False)
    link = finished[0]["mlflow"]
    ui = (link["url"] or "").split("/#")[0]
    # The experiment's runs table, in the UI's model-training view (a new browser starts on
    # the GenAI view otherwise).
    console.print(
        f"MLflow UI: {experiment_link(ui, link['experiment_id']) if ui else 'not linked'}   "
        f"API docs: {str(client.http.base_url).rstrip('/')}/docs",
        highlight=False,
    )
    console.print("The stack keeps running for browsing; `make down` stops it.")
    return 1 if failed else 0
