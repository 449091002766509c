"""The API's defences, against real processes: a database outage is a 503 with
``Retry-After``, oversized bodies a 413, a key submitting too fast a 429, CORS closed unless
configured, and a revoked key a 401. Settings that differ from the session's API run in a
second, small uvicorn process started here with its own environment."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from jobs.admin import create_key, revoke_key
from tests.service.conftest import ROOT, free_port, scratch_database
from tests.service.processes import extra_api
from tests.service.servers import servers

TWO_MIB = 2 * 1024 * 1024
INVALID_JOB = {"train": {"epochs": -1}}


def assert_unavailable(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) > 0
    assert "database unavailable" in reply.json()["detail"]


def test_unreachable_database_is_503_with_retry_after(
    service_env: dict[str, str], job_body: Callable[..., dict]
) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    with extra_api(service_env, database_url=closed) as url:
        headers = {"Authorization": "Bearer leap_not-checked-while-the-database-is-away"}
        assert_unavailable(httpx.get(f"{url}/v1/jobs", headers=headers))
        assert_unavailable(httpx.post(f"{url}/v1/jobs", headers=headers, json=job_body()))
        assert_unavailable(httpx.post(f"{url}/v1/sweeps", headers=headers, json={}))
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert int(ready.headers["Retry-After"]) > 0
        assert ready.json()["database"].startswith("unreachable: OperationalError")


@pytest.fixture
def own_database() -> Iterator[str]:
    """A migrated database of this test's own, dropped at the end."""
    with scratch_database() as url:
        yield url


def test_database_lost_mid_service_is_503_then_recovers(
    service_env: dict[str, str], own_database: str, job_body: Callable[..., dict]
) -> None:
    """The pool's connections are cut and new ones refused (what a PostgreSQL restart
    looks like to the API): 503s, then 200s once the database takes connections again."""
    name = make_url(own_database).database
    token = create_key("outage", own_database)
    headers = {"Authorization": f"Bearer {token}"}
    with extra_api(service_env, database_url=own_database) as url:
        assert httpx.get(f"{url}/v1/jobs", headers=headers).status_code == 200
        with psycopg.connect(servers().pg_admin, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            assert_unavailable(httpx.get(f"{url}/v1/jobs", headers=headers))
            # the key is cached, so the valid job passes auth and fails at its INSERT
            assert_unavailable(httpx.post(f"{url}/v1/jobs", headers=headers, json=job_body()))
            assert httpx.get(f"{url}/readyz").status_code == 503
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        assert httpx.get(f"{url}/v1/jobs", headers=headers).status_code == 200
        assert httpx.get(f"{url}/readyz").json()["database"] == "ok"


def test_body_over_the_limit_is_413_before_parsing(make_client) -> None:
    client = make_client()
    big = b'{"name": "' + b"x" * TWO_MIB + b'"}'
    reply = client.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert "LEAP_MAX_BODY_BYTES=1048576" in reply.json()["detail"]
    assert str(len(big)) in reply.json()["detail"]


def test_chunked_body_over_the_limit_is_413(make_client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        yield b'{"name": "'
        for _ in range(32):
            yield b"x" * (64 * 1024)
        yield b'"}'

    reply = make_client().post(
        "/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 413
    assert "more than 1048576" in reply.json()["detail"]


def test_small_chunked_body_still_reaches_validation(make_client) -> None:
    reply = make_client().post(
        "/v1/jobs",
        content=iter([b'{"train": ', b'{"epochs": -1}}']),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 422, reply.text


@pytest.fixture(scope="module")
def limited_api(service_env: dict[str, str]) -> Iterator[str]:
    """An API allowing 3 submissions a minute per key and CORS from one origin."""
    with extra_api(
        service_env, submit_rate_per_minute="3", cors_origins="https://ok.example"
    ) as url:
        yield url


def test_submissions_beyond_the_rate_are_429(limited_api: str, database_url: str) -> None:
    """Invalid bodies count too: the limit is checked after the key, before validation."""
    first = {"Authorization": f"Bearer {create_key('fast', database_url)}"}
    second = {"Authorization": f"Bearer {create_key('calm', database_url)}"}
    for _ in range(3):
        submitted = httpx.post(f"{limited_api}/v1/jobs", headers=first, json=INVALID_JOB)
        assert submitted.status_code == 422, submitted.text
    refused = httpx.post(f"{limited_api}/v1/jobs", headers=first, json=INVALID_JOB)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 20
    assert "LEAP_SUBMIT_RATE_PER_MINUTE=3" in refused.json()["detail"]
    assert httpx.post(f"{limited_api}/v1/sweeps", headers=first, json={}).status_code == 429
    # reads are not limited, and another key has its own bucket
    assert httpx.get(f"{limited_api}/v1/jobs", headers=first).status_code == 200
    assert httpx.post(f"{limited_api}/v1/sweeps", headers=second, json={}).status_code == 422
    # no key is a 401, not a 429
    assert httpx.post(f"{limited_api}/v1/jobs", json=INVALID_JOB).status_code == 401


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/v1/jobs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_is_closed_by_default(api_url: str) -> None:
    reply = preflight(api_url, "https://elsewhere.example")
    assert "access-control-allow-origin" not in reply.headers
    assert reply.status_code >= 400


def test_cors_allows_only_listed_origins(limited_api: str) -> None:
    allowed = preflight(limited_api, "https://ok.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = preflight(limited_api, "https://elsewhere.example")
    assert "access-control-allow-origin" not in refused.headers
    plain = httpx.get(f"{limited_api}/healthz", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in plain.headers


def leap_admin(service_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "leap"), "admin", *args],
        cwd=ROOT,
        env=service_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_revoked_key_is_401(service_env: dict[str, str], api_url: str, database_url: str) -> None:
    token = create_key("revoked", database_url)
    done = leap_admin(service_env, "revoke-key", token[:12])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"revoked {token[:12]} of revoked"
    reply = httpx.get(f"{api_url}/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 401
    with pytest.raises(LookupError, match=f"no live API key matches {token[:12]!r}"):
        revoke_key(token, database_url)  # already revoked
    with pytest.raises(ValueError, match="too short"):
        revoke_key("leap_", database_url)


def test_requests_beyond_the_admission_limit_wait_then_get_503(
    service_env: dict[str, str], own_database: str
) -> None:
    """Two requests stuck on a locked table hold both slots of an API admitting two: a
    third waits its second and is a 503 with Retry-After, the liveness probe is never held,
    and once the lock goes the stuck ones finish and requests are served again."""
    keys = [create_key(f"admission-{n}", own_database) for n in range(4)]

    def jobs_of(url: str, key: str) -> httpx.Response:
        return httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=30)

    with (
        extra_api(
            service_env,
            database_url=own_database,
            max_concurrent_requests="2",
            admission_wait_seconds="1",
        ) as url,
        psycopg.connect(
            make_url(own_database)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        ) as locker,
        ThreadPoolExecutor(2) as pool,
    ):
        locker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")  # until commit
        stuck = [pool.submit(jobs_of, url, key) for key in keys[:2]]  # uncached keys
        time.sleep(1)
        began = time.monotonic()
        busy = jobs_of(url, keys[2])
        waited = time.monotonic() - began
        assert httpx.get(f"{url}/healthz").status_code == 200
        locker.commit()
        assert [reply.result().status_code for reply in stuck] == [200, 200]
        assert jobs_of(url, keys[3]).status_code == 200
    assert busy.status_code == 503, busy.text
    assert 1.0 <= waited < 3.0
    assert busy.headers["Retry-After"] == "2"
    assert "LEAP_MAX_CONCURRENT_REQUESTS=2" in busy.json()["detail"]
