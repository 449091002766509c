"""Sweeps on the service, against the session's real PostgreSQL, Redis, API and Celery
worker: a sweep file submitted with the client becomes one job per cell, the worker trains
them, and GET returns the paper-format table built from the jobs' final metrics. Invalid
sweeps store and queue nothing; another owner's sweep is a 404; migration 0002 goes down
and up cleanly. The API-only tests submit to an API whose queue no worker consumes, so they
count exactly what they queued whether or not the worker test ran first."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select
from typer.testing import CliRunner

from jobs.db import session_scope
from jobs.migrate import downgrade, upgrade
from jobs.models import Base, Job, Sweep, SweepCell
from leap_cli import app as leap_app
from tests.service.api.test_service_api import queue_length
from tests.service.conftest import scratch_database

METHODS = {
    "method": {"CosFace": {"method.leap.mode": "off"}, "LEAP-CF": {"method.leap.mode": "full"}}
}


@pytest.fixture
def sweep_body(job_body):
    """CosFace against LEAP-CF, one seed, on the conftest's tiny job; fields replace the
    sweep's: ``sweep_body(seeds=[0, 1])``."""

    def build(**fields) -> dict:
        return {
            "name": "tiny-sweep",
            "base": job_body(),
            "axes": copy.deepcopy(METHODS),
            "seeds": [0],
            **fields,
        }

    return build


def stored(database_url: str, owner: str) -> tuple[int, int, int]:
    """Rows the owner has: sweeps, sweep cells, jobs."""
    with session_scope(database_url) as session:
        sweeps = session.scalar(select(func.count()).where(Sweep.owner == owner))
        cells = session.scalar(
            select(func.count())
            .select_from(SweepCell)
            .join(Sweep, Sweep.id == SweepCell.sweep_id)
            .where(Sweep.owner == owner)
        )
        jobs = session.scalar(select(func.count()).where(Job.owner == owner))
    return sweeps, cells, jobs


def test_invalid_sweeps_are_422_naming_cell_and_field_and_nothing_is_stored_or_queued(
    make_client, sweep_body, idle_api, database_url
):
    owner = f"sweep-invalid-{uuid.uuid4().hex[:6]}"
    client = make_client(owner, url=idle_api.url)
    service_env = idle_api.env
    before = queue_length(service_env)
    # The first cell (CosFace) is valid: only the second is not, so nothing stored proves
    # the grid is validated as a whole before anything is written.
    bad_cell = sweep_body(
        axes={
            "method": {
                "CosFace": {"method.leap.mode": "off"},
                "LEAP-CF": {"method.leap.mode": "full", "train.optimizer.lr": -1},
            }
        }
    )
    response = client.post("/v1/sweeps", json=bad_cell)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "path": "axes.method.LEAP-CF seed 0",
            "type": "invalid_sweep",
            "message": "train.optimizer.lr: Input should be greater than 0 (got -1)",
        }
    ]

    escaping = sweep_body(
        axes={
            "method": {"CosFace": {"method.leap.mode": "off"}, "LEAP-CF": {"dataset.root": "/etc"}}
        }
    )
    error = client.post("/v1/sweeps", json=escaping).json()["errors"]
    assert [(e["path"], e["input"]) for e in error] == [
        ("cells.method=LEAP-CF__seed0.dataset.root", "/etc")
    ]
    assert "allowed data directories" in error[0]["message"]

    file_base = client.post(
        "/v1/sweeps",
        json=sweep_body(base="examples/tiny_synthetic.yaml", validation={"identities": 3}),
    )
    assert file_base.status_code == 422
    problems = {e["path"]: e for e in file_base.json()["errors"]}
    assert set(problems) == {"base", "validation"}
    assert problems["base"]["input"] == "examples/tiny_synthetic.yaml"
    assert "inline" in problems["base"]["message"]

    typo = client.post("/v1/sweeps", json=sweep_body(seedz=[1])).json()["errors"]
    assert [(e["path"], e["message"]) for e in typo] == [
        ("seedz", "Extra inputs are not permitted")
    ]
    axis = client.post("/v1/sweeps", json=sweep_body(method_axis="loss")).json()["errors"]
    assert [e["path"] for e in axis] == ["method_axis"]

    assert stored(database_url, owner) == (0, 0, 0)
    assert queue_length(service_env) == before


def test_a_sweep_is_stored_with_its_jobs_queued_once_and_idempotent(
    make_client, sweep_body, idle_api, database_url
):
    owner = f"sweep-store-{uuid.uuid4().hex[:6]}"
    client = make_client(owner, url=idle_api.url)
    service_env = idle_api.env
    before = queue_length(service_env)
    headers = {"Idempotency-Key": "sweep-7"}
    first = client.post(
        "/v1/sweeps", json={**sweep_body(), "tags": ["paper"], "priority": 7}, headers=headers
    )
    assert first.status_code == 201, first.text
    sweep = first.json()
    assert first.headers["location"] == f"/v1/sweeps/{sweep['id']}"
    assert sweep["status"] == "queued" and sweep["counts"]["queued"] == 2
    assert [(c["cell"], c["labels"], c["seed"]) for c in sweep["cells"]] == [
        ("method=CosFace__seed0", {"method": "CosFace"}, 0),
        ("method=LEAP-CF__seed0", {"method": "LEAP-CF"}, 0),
    ]
    assert sweep["table"] == {
        "complete": False,
        "cells_in_table": 0,
        "cells": 2,
        "rows": [],
        "markdown": "",
        "note": "partial: 0 of 2 cells succeeded (2 queued); rows and deltas cover the "
        "succeeded cells only",
    }
    assert queue_length(service_env) == before + 2
    assert stored(database_url, owner) == (1, 2, 2)

    jobs = {
        cell["cell"]: client.get(f"/v1/jobs/{cell['job_id']}").json() for cell in sweep["cells"]
    }
    assert jobs["method=CosFace__seed0"]["spec"]["method"]["leap"]["mode"] == "off"
    assert jobs["method=LEAP-CF__seed0"]["spec"]["method"]["leap"]["mode"] == "full"
    assert jobs["method=LEAP-CF__seed0"]["name"] == "tiny-sweep LEAP-CF seed0"
    for job in jobs.values():
        assert job["tags"] == ["paper", f"sweep:{sweep['id']}"] and job["priority"] == 7
    listed = client.get("/v1/jobs", params={"tag": f"sweep:{sweep['id']}"}).json()["items"]
    assert {job["id"] for job in listed} == {cell["job_id"] for cell in sweep["cells"]}

    again = client.post(
        "/v1/sweeps", json={**sweep_body(), "tags": ["paper"], "priority": 7}, headers=headers
    )
    assert again.status_code == 200 and again.json()["id"] == sweep["id"]
    assert queue_length(service_env) == before + 2
    assert stored(database_url, owner) == (1, 2, 2)
    other = client.post("/v1/sweeps", json=sweep_body(seeds=[1]), headers=headers)
    assert other.status_code == 409


def test_another_owners_sweep_is_404_and_lists_are_per_owner_newest_first(
    make_client, sweep_body, idle_api
):
    alice, bob = make_client(url=idle_api.url), make_client(url=idle_api.url)
    older = alice.post("/v1/sweeps", json=sweep_body()).json()
    newer = alice.post("/v1/sweeps", json=sweep_body(name="second")).json()
    missing = bob.get(f"/v1/sweeps/{older['id']}")
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"sweep {older['id']} not found"}
    assert bob.get("/v1/sweeps").json() == {"items": [], "next_cursor": None}
    assert bob.get(f"/v1/jobs/{older['cells'][0]['job_id']}").status_code == 404
    page = alice.get("/v1/sweeps", params={"limit": 1}).json()
    assert [s["id"] for s in page["items"]] == [newer["id"]]
    rest = alice.get("/v1/sweeps", params={"cursor": page["next_cursor"]}).json()
    assert [s["id"] for s in rest["items"]] == [older["id"]] and rest["next_cursor"] is None
    assert rest["items"][0]["counts"]["queued"] == 2
    assert alice.get(f"/v1/sweeps/{older['id']}").status_code == 200
    paths = httpx.get(f"{alice.base_url}/openapi.json").json()["paths"]
    assert {"/v1/sweeps", "/v1/sweeps/{sweep_id}"} <= set(paths)


@pytest.fixture
def empty_database() -> Iterator[str]:
    with scratch_database(migrated=False) as url:
        yield url


def test_migration_0002_matches_the_models_and_goes_down_and_up_cleanly(empty_database):
    engine = create_engine(empty_database)
    try:
        upgrade(empty_database)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert {"sweeps", "sweep_cells"} <= set(inspect(engine).get_table_names())
        downgrade(empty_database, "0001")
        assert set(inspect(engine).get_table_names()) == {
            "alembic_version",
            "api_keys",
            "jobs",
            "job_events",
        }
        upgrade(empty_database)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] not in ("queued", "running"):
            return sweep
        time.sleep(0.25)
    raise TimeoutError(f"sweep {sweep_id} still {sweep['status']} after {timeout}s")


def test_a_sweep_file_trains_every_cell_and_returns_the_paper_table(
    worker, make_client, job_body, api_url, tmp_path, monkeypatch
):
    client = make_client()
    # A sweep file whose base is a spec file next to it: the client inlines it.
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(job_body()))
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        yaml.safe_dump({"name": "tiny-sweep", "base": "base.yaml", "axes": METHODS, "seeds": [0]})
    )
    token = client.headers["Authorization"].removeprefix("Bearer ")
    monkeypatch.setenv("LEAP_URL", api_url)
    monkeypatch.setenv("LEAP_API_KEY", token)
    submitted = CliRunner().invoke(leap_app, ["sweep", str(sweep_file), "--remote"])
    assert submitted.exit_code == 0, submitted.output
    sweep_id = submitted.output.strip().splitlines()[-1]
    cells = {c["labels"]["method"]: c for c in client.get(f"/v1/sweeps/{sweep_id}").json()["cells"]}
    # Hold LEAP-CF back (the solo worker takes CosFace first) to see the partial table.
    held = client.post(f"/v1/jobs/{cells['LEAP-CF']['job_id']}/cancel").json()
    assert held["status"] == "cancelled"

    partial = wait_sweep(client, sweep_id)
    assert partial["status"] == "cancelled"
    assert partial["counts"]["succeeded"] == partial["counts"]["cancelled"] == 1
    table = partial["table"]
    assert not table["complete"] and table["cells_in_table"] == 1
    assert table["note"].startswith("partial: 1 of 2 cells succeeded (1 cancelled)")
    assert [(row["method"], row["baseline"], row["delta"]) for row in table["rows"]] == [
        ("CosFace", None, {})
    ]

    client.post(f"/v1/jobs/{cells['LEAP-CF']['job_id']}/retry")
    done = wait_sweep(client, sweep_id)
    assert done["status"] == "succeeded", [c["status"] for c in done["cells"]]
    assert done["counts"]["succeeded"] == 2
    table = done["table"]
    assert table["complete"] and table["note"] == "complete: all 2 cells succeeded"
    jobs = {
        c["labels"]["method"]: client.get(f"/v1/jobs/{c['job_id']}").json() for c in done["cells"]
    }
    cosface, leap = table["rows"]
    assert (cosface["method"], cosface["paper_method"], cosface["baseline"]) == (
        "CosFace",
        "CosFace",
        None,
    )
    assert (leap["method"], leap["paper_method"], leap["baseline"]) == (
        "LEAP-CF",
        "LEAP-CF",
        "CosFace",
    )
    for metric in ("mAP", "rank1"):
        mine, theirs = jobs["LEAP-CF"]["metrics"][metric], jobs["CosFace"]["metrics"][metric]
        assert leap["metrics"][metric] == {"mean": mine, "std": None, "n": 1}
        assert cosface["metrics"][metric]["mean"] == theirs
        assert leap["delta"][metric] == {"mean": pytest.approx(mine - theirs), "std": None, "n": 1}
    markdown = table["markdown"].splitlines()
    assert markdown[0] == (
        "| method | seeds | mAP | Rank-1 | ΔmAP | ΔRank-1 | vs | head var | tail var |"
    )
    delta = 100 * (jobs["LEAP-CF"]["metrics"]["mAP"] - jobs["CosFace"]["metrics"]["mAP"])
    assert markdown[3].startswith(f"| LEAP-CF | 1 | {100 * leap['metrics']['mAP']['mean']:.1f}")
    assert f"| {delta:+.1f} |" in markdown[3] and markdown[3].count("CosFace") == 1

    shown = CliRunner().invoke(leap_app, ["sweep-status", sweep_id])
    assert shown.exit_code == 0, shown.output
    assert f"sweep {sweep_id} tiny-sweep: succeeded (2 succeeded)" in shown.output
    assert "table: complete: all 2 cells succeeded" in shown.output
    assert "LEAP-CF" in shown.output and "ΔmAP" in shown.output
    as_json = CliRunner().invoke(leap_app, ["sweep-status", sweep_id, "--json", "--watch"])
    assert json.loads(as_json.output)["table"] == table
    watched = CliRunner().invoke(leap_app, ["sweep-status", sweep_id, "--watch"])
    assert watched.exit_code == 0 and "method=LEAP-CF__seed0" in watched.output
