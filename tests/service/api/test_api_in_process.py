"""The API in process: FastAPI's test client on :func:`api.main.create_app`, against the
session's real PostgreSQL and Redis (no uvicorn, no worker). What a route answers is
checked together with what it left in the database and the queue: a submission is
validated once, its data paths confined once and stored absolute; a refused one leaves
nothing behind; every error has the one JSON shape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from jobs.admin import create_key
from jobs.db import session_scope
from jobs.models import Job, Sweep
from jobs.settings import Settings
from tests.service.api.test_service_api import queue_length


@pytest.fixture(scope="module")
def settings(service_env: dict[str, str]) -> Settings:
    return Settings(
        database_url=service_env["LEAP_DATABASE_URL"],
        broker_url=service_env["LEAP_BROKER_URL"],
        data_roots=[Path(service_env["LEAP_DATA_ROOTS"])],
        queue=service_env["LEAP_QUEUE"],
        mlflow_ui_url="http://mlflow.test:5000",
        runs_dir=Path(service_env["LEAP_RUNS_DIR"]),
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    token = create_key(f"in-process-{uuid.uuid4().hex[:8]}", settings.database_url)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"}) as test:
        yield test


def _counts(database_url: str) -> tuple[int, int]:
    with session_scope(database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Job)) or 0,
            session.scalar(select(func.count()).select_from(Sweep)) or 0,
        )


def test_a_submission_is_stored_with_its_path_made_absolute_and_queued_once(
    client: TestClient, settings: Settings, service_env: dict[str, str], job_body, tiny_root
):
    relative = str(Path(tiny_root).relative_to(settings.data_roots[0]))
    before = queue_length(service_env)
    response = client.post("/v1/jobs", json={**job_body(), "name": None, "tags": ["in-process"]})
    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["name"] == "synthetic <H4,S3> LEAP-CF seed0"  # the spec's run name
    assert queue_length(service_env) == before + 1
    with session_scope(settings.database_url) as session:
        row = session.get(Job, job["id"])
        assert row is not None
        stored = (row.spec["dataset"]["root"], row.epochs, row.tags, row.owner.startswith("in-"))
    assert stored == (tiny_root, 2, ["in-process"], True)
    # A relative root is confined and stored absolute under the first data root.
    relative_job = client.post("/v1/jobs", json=job_body(dataset={"root": relative})).json()
    with session_scope(settings.database_url) as session:
        row = session.get(Job, relative_job["id"])
        assert row is not None and row.spec["dataset"]["root"] == tiny_root


def test_a_path_outside_the_data_roots_is_one_422_and_nothing_is_stored(
    client: TestClient, settings: Settings, service_env: dict[str, str], job_body
):
    before, queued = _counts(settings.database_url), queue_length(service_env)
    response = client.post("/v1/jobs", json=job_body(dataset={"root": "/etc"}))
    assert response.status_code == 422
    body = response.json()
    assert [(e["path"], e["input"]) for e in body["errors"]] == [("dataset.root", "/etc")]
    assert (
        "must be inside the allowed data directories (LEAP_DATA_ROOTS: "
        in body["errors"][0]["message"]
    )
    assert body["detail"].startswith("dataset.root: must be inside the allowed data directories")
    assert (_counts(settings.database_url), queue_length(service_env)) == (before, queued)


def test_a_sweep_names_the_cell_whose_path_escapes_and_stores_nothing(
    client: TestClient, settings: Settings, job_body
):
    before = _counts(settings.database_url)
    sweep = {
        "name": "escape",
        "base": job_body(),
        "axes": {"data": {"inside": {}, "outside": {"dataset.root": "../../.."}}},
    }
    response = client.post("/v1/sweeps", json=sweep)
    assert response.status_code == 422
    paths = [error["path"] for error in response.json()["errors"]]
    assert paths == ["cells.data=outside__seed0.dataset.root"]
    assert _counts(settings.database_url) == before


def test_values_the_database_cannot_store_are_named_before_any_other_check(
    client: TestClient, job_body
):
    response = client.post("/v1/jobs", json={**job_body(), "name": "a\x00b", "tags": ["\x00"]})
    assert response.status_code == 422
    assert [(e["path"], e["input"]) for e in response.json()["errors"]] == [
        ("name", "a\x00b"),
        ("tags.0", "\x00"),
    ]


def test_every_error_has_the_one_shape(client: TestClient):
    missing = client.get(f"/v1/jobs/{'0' * 32}")
    assert (missing.status_code, missing.json()) == (404, {"detail": f"job {'0' * 32} not found"})
    anonymous = client.get("/v1/jobs", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.json() == {
        "detail": "missing or invalid API key (Authorization: Bearer <key>)"
    }
    assert anonymous.headers["www-authenticate"] == "Bearer"
    odd_id = client.get("/v1/jobs/not-an-id")
    assert odd_id.status_code == 422
    assert [error["path"] for error in odd_id.json()["errors"]] == ["path.job_id"]


def test_a_root_inside_the_data_roots_that_names_nothing_is_a_422_at_submission(
    client: TestClient, settings: Settings, job_body
):
    """The API sees the data root, so a dataset that is not there is refused now, not
    failed later by a worker; a synthetic root is generated when missing, so it passes."""
    before = _counts(settings.database_url)
    root = settings.data_roots[0]
    response = client.post(
        "/v1/jobs", json=job_body(dataset={"format": "market1501", "root": "no-such-set"})
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["path"], error["input"]) == ("dataset.root", "no-such-set")
    assert error["message"] == (
        f"does not exist: 'no-such-set' names nothing in {root.resolve()} (LEAP_DATA_ROOTS)"
    )
    assert _counts(settings.database_url) == before
    generated = client.post("/v1/jobs", json=job_body(dataset={"root": "generated-later"}))
    assert generated.status_code == 201, generated.text


def test_a_job_is_stamped_sent_in_its_one_commit_and_unstamped_if_the_broker_refuses_it(
    client: TestClient, settings: Settings, service_env: dict[str, str], job_body
):
    """The dispatch stamp is written with the job (one commit per submission). When the
    broker refuses the message, the 503 leaves the job queued and unstamped, so the
    replay with the same Idempotency-Key sends it (and stamps it)."""
    sent = client.post("/v1/jobs", json=job_body())
    assert sent.status_code == 201, sent.text
    with session_scope(settings.database_url) as session:
        assert session.get(Job, sent.json()["id"]).dispatched_at is not None

    key = f"refused-{uuid.uuid4().hex}"
    no_broker = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(no_broker), headers=client.headers) as down:
        refused = down.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": key})
    assert refused.status_code == 503, refused.text
    job_id = refused.json()["detail"].split()[1]
    assert "is stored but the broker did not take it" in refused.json()["detail"]
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.dispatched_at) == ("queued", None)

    before = queue_length(service_env)
    replay = client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": key})
    assert (replay.status_code, replay.json()["id"]) == (200, job_id)
    assert replay.headers["location"] == f"/v1/jobs/{job_id}"
    assert queue_length(service_env) == before + 1
    with session_scope(settings.database_url) as session:
        assert session.get(Job, job_id).dispatched_at is not None


def test_an_owner_past_its_queue_limit_is_refused_with_429_and_nothing_is_stored(
    settings: Settings, job_body
):
    limited = settings.model_copy(update={"max_queued_per_owner": 2})
    token = create_key(f"limited-{uuid.uuid4().hex[:8]}", settings.database_url)
    with TestClient(create_app(limited), headers={"Authorization": f"Bearer {token}"}) as test:
        kept = [test.post("/v1/jobs", json=job_body()).json() for _ in range(2)]
        before = _counts(settings.database_url)
        refused = test.post("/v1/jobs", json=job_body())
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"] == (
            "2 of your jobs are queued and this request adds 1; LEAP_MAX_QUEUED_PER_OWNER "
            "allows 2: wait for some to start, or cancel some"
        )
        sweep = test.post(
            "/v1/sweeps",
            json={
                "name": "over",
                "base": job_body(),
                "axes": {"lr": {"low": {"train.optimizer.lr": 1e-3}, "high": {}}},
            },
        )
        assert sweep.status_code == 429, sweep.text
        assert _counts(settings.database_url) == before
        # The queue the owner sees: oldest first, both with their place.
        queued = test.get("/v1/jobs", params={"order": "queue"}).json()["items"]
        assert [job["id"] for job in queued] == [job["id"] for job in kept]
        positions = [job["queue"]["position"] for job in queued]
        assert positions == sorted(positions) and len(set(positions)) == 2
        for job in kept:  # cancelled at once, making room again
            assert test.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        assert test.post("/v1/jobs", json=job_body()).status_code == 201
