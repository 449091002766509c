"""The REST API against a real PostgreSQL and Redis (no worker consumes here, so what the
API queued stays in Redis to be counted)."""

from __future__ import annotations

import httpx
import redis
from sqlalchemy import func, select

from jobs.db import session_scope
from jobs.models import Job


def queue_length(service_env) -> int:
    """Messages waiting in the test queue, over kombu's per-priority Redis lists."""
    client, queue = redis.Redis.from_url(service_env["LEAP_BROKER_URL"]), service_env["LEAP_QUEUE"]
    return sum(client.llen(queue + (f"\x06\x16{p}" if p else "")) for p in (0, 3, 6, 9))


def test_health_and_readiness(api_url):
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api_url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_openapi_lists_the_job_routes(api_url):
    paths = httpx.get(f"{api_url}/openapi.json").json()["paths"]
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/retry",
        "/v1/jobs/{job_id}/events",
    } <= set(paths)
    assert httpx.get(f"{api_url}/docs").status_code == 200


def test_no_key_or_a_wrong_key_is_401(api_url, job_body):
    assert httpx.get(f"{api_url}/v1/jobs").status_code == 401
    response = httpx.post(
        f"{api_url}/v1/jobs", json=job_body(), headers={"Authorization": "Bearer leap_not-a-key"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_invalid_specs_get_422_with_field_paths_and_nothing_is_stored_or_queued(
    make_client, job_body, service_env, database_url
):
    client = make_client("invalid-owner")
    before = queue_length(service_env)
    cases = {
        "train.optimizer.lr": job_body(train={"optimizer": {"lr": -1}}),
        "model.backbone": job_body(model={"backbone": "vgg"}),
        "train.epochs_typo": job_body(train={"epochs_typo": 3}),
        "priority": {**job_body(), "priority": 12},
    }
    for path, body in cases.items():
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422, (path, response.text)
        errors = response.json()["errors"]
        assert [error["path"] for error in errors] == [path], errors
    bad_lr = client.post("/v1/jobs", json=cases["train.optimizer.lr"]).json()["errors"][0]
    assert bad_lr["message"] == "Input should be greater than 0"
    assert bad_lr["input"] == -1
    with session_scope(database_url) as session:
        stored = session.scalar(select(func.count()).where(Job.owner == "invalid-owner"))
    assert stored == 0
    assert queue_length(service_env) == before


def test_dataset_root_outside_the_allowed_directories_is_422(make_client, job_body, service_env):
    client = make_client()
    for root in ["/etc", "../../etc"]:
        response = client.post("/v1/jobs", json=job_body(dataset={"root": root}))
        assert response.status_code == 422
        error = response.json()["errors"][0]
        assert error["path"] == "dataset.root"
        assert "allowed data directories" in error["message"]
        assert error["input"] == root


def test_a_job_larger_than_any_worker_is_422_naming_the_largest_size(
    make_client, job_body, service_env, database_url
):
    client = make_client("device-owner")
    before = queue_length(service_env)
    response = client.post("/v1/jobs", json=job_body(resources={"devices": 3}))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["path"] == "resources.devices" and error["input"] == 3
    assert error["message"] == (
        "3 devices asked; the largest job this service runs has 2 (LEAP_MAX_DEVICES_PER_JOB)"
    )
    with session_scope(database_url) as session:
        assert session.scalar(select(func.count()).where(Job.owner == "device-owner")) == 0
    assert queue_length(service_env) == before
    assert client.post("/v1/jobs", json=job_body(resources={"devices": 0})).status_code == 422


def test_submit_stores_once_queues_once_and_reads_back(make_client, job_body, service_env):
    client = make_client()
    before = queue_length(service_env)
    response = client.post("/v1/jobs", json={**job_body(), "tags": ["smoke"], "priority": 7})
    assert response.status_code == 201
    job = response.json()
    assert job["status"] == "queued"
    assert job["attempt"] == 1
    assert job["tags"] == ["smoke"]
    assert job["priority"] == 7
    assert job["links"]["self"] == f"/v1/jobs/{job['id']}"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["spec"]["train"]["epochs"] == 2
    assert job["spec"]["train"]["optimizer"]["kind"] == "adam"  # defaults filled in
    assert queue_length(service_env) == before + 1
    read = client.get(f"/v1/jobs/{job['id']}").json()
    assert read["status"] == "queued" and read["created_at"] == job["created_at"]
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in events] == [
        ("state", None, "queued")
    ]


def test_idempotency_key_makes_a_retried_post_return_the_same_job(
    make_client, job_body, service_env
):
    client = make_client()
    before = queue_length(service_env)
    headers = {"Idempotency-Key": "submit-42"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    second = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert len(client.get("/v1/jobs").json()["items"]) == 1
    assert queue_length(service_env) == before + 1
    other = client.post("/v1/jobs", json=job_body(train={"epochs": 3}), headers=headers)
    assert other.status_code == 409


def test_another_owners_job_is_404_everywhere(make_client, job_body):
    alice, bob = make_client("alice"), make_client("bob")
    job_id = alice.post("/v1/jobs", json=job_body()).json()["id"]
    for method, path in [("GET", ""), ("GET", "/events"), ("POST", "/cancel"), ("POST", "/retry")]:
        assert bob.request(method, f"/v1/jobs/{job_id}{path}").status_code == 404
    assert job_id not in [job["id"] for job in bob.get("/v1/jobs").json()["items"]]
    assert alice.get(f"/v1/jobs/{job_id}").status_code == 200


def test_list_filters_and_pages_newest_first(make_client, job_body):
    client = make_client()
    ids = [
        client.post(
            "/v1/jobs", json={**job_body(), "tags": ["even" if i % 2 == 0 else "odd"]}
        ).json()["id"]
        for i in range(5)
    ]
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    even = client.get("/v1/jobs", params={"tag": "even"}).json()["items"]
    assert [job["id"] for job in even] == [ids[4], ids[2], ids[0]]
    client.post(f"/v1/jobs/{ids[1]}/cancel")
    cancelled = client.get("/v1/jobs", params={"status": "cancelled"}).json()["items"]
    assert [job["id"] for job in cancelled] == [ids[1]]
    assert client.get("/v1/jobs", params={"cursor": "garbage"}).status_code == 422


def test_cancel_a_queued_job_at_once_and_retry_rules(make_client, job_body):
    client = make_client()
    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/retry").status_code == 409  # queued: no retry
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert [e["to_status"] for e in events] == ["queued", "cancelled"]


def test_events_follow_streams_server_sent_events_until_the_job_ends(make_client, job_body):
    client = make_client()
    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    with client.stream("GET", f"/v1/jobs/{job_id}/events", params={"follow": "true"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    frames = [frame for frame in text.split("\n\n") if frame.strip()]
    assert [frame.splitlines()[1] for frame in frames] == [
        "event: state",
        "event: state",
        'data: {"status": "cancelled"}',
    ]
    assert '"to_status":"queued"' in frames[0] and '"to_status":"cancelled"' in frames[1]
