"""Schemathesis fuzzes every operation of the OpenAPI schema the real API serves, with a
valid key: valid and invalid bodies, query strings, headers and path ids, and no answer may
be a 5xx, or a status code or content type the schema does not document. An exception after
a reply has started (inside an event stream, whose 200 is already sent) leaves a traceback
in the API's log, which ``extra_api`` refuses when the module ends.

The fuzzed API is a second uvicorn process of its own (``extra_api``): its submission rate
is high enough for a fuzzer, its sweeps are capped small, and it queues on a queue no worker
consumes, so a fuzzed body that happens to be a valid job is stored but never trained (and
is cancelled when the module ends, so no later reconciler pass sends it anywhere either).
Generation is derandomized: a run of this file alone sends the same cases as the last one.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from sqlalchemy import select

from api.main import create_app
from jobs.admin import create_key
from jobs.db import session_scope
from jobs.models import Job, JobStatus
from jobs.service import cancel_job
from jobs.settings import Settings
from tests.service.conftest import TINY_JOB
from tests.service.processes import extra_api

#: Fuzzed cases per operation (hypothesis' budget; schemathesis' coverage phase adds its
#: boundary cases on top); the whole file runs in about a minute on two cores.
MAX_EXAMPLES = 40
#: Seconds a fuzzed request may take; an event stream is read for this long at most.
REQUEST_TIMEOUT = 10.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]

#: Requests sent per operation label ("GET /v1/jobs"), and their status codes, for the
#: closing report.
sent: Counter[str] = Counter()
statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)


#: The schema the app serves, built in-process so that pytest collects one test per
#: operation; ``fuzz_api`` checks that the running API serves exactly this one.
OPENAPI = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def fuzz_api(service_env: dict[str, str]) -> Iterator[str]:
    """The API under fuzzing: no practical rate limit, at most 8 cells a sweep, and a
    queue of its own that nothing consumes."""
    with extra_api(
        service_env,
        submit_rate_per_minute="1000000",
        max_sweep_cells="8",
        queue=f"leap-fuzz-{uuid.uuid4().hex[:8]}",
    ) as url:
        assert httpx.get(f"{url}/openapi.json").json() == OPENAPI
        yield url


@pytest.fixture(scope="module")
def fuzz_owner(database_url: str) -> Iterator[tuple[str, str]]:
    """``(owner, token)`` of the fuzzer; every job it got stored is cancelled at the end."""
    owner = f"fuzzer-{uuid.uuid4().hex[:8]}"
    yield owner, create_key(owner, database_url)
    with session_scope(database_url) as session:
        queued = session.scalars(
            select(Job.id).where(Job.owner == owner, Job.status == JobStatus.queued)
        ).all()
    for job_id in queued:
        with session_scope(database_url) as session:
            cancel_job(session, owner, job_id)


@pytest.fixture(scope="module")
def tiny_job_body(tiny_root: str) -> dict:
    return {**TINY_JOB, "dataset": {**TINY_JOB["dataset"], "root": tiny_root}}


@pytest.fixture(scope="module")
def owned(fuzz_api: str, fuzz_owner: tuple[str, str], tiny_job_body: dict) -> dict[str, str]:
    """A cancelled job and a sweep of the fuzzer's own, so reads by id also reach a real
    row (a cancelled job, so an event stream on it ends instead of waiting)."""
    headers = {"Authorization": f"Bearer {fuzz_owner[1]}"}
    job = httpx.post(f"{fuzz_api}/v1/jobs", headers=headers, json=tiny_job_body)
    assert job.status_code == 201, job.text
    assert (
        httpx.post(f"{fuzz_api}/v1/jobs/{job.json()['id']}/cancel", headers=headers).status_code
        == 200
    )
    sweep = httpx.post(
        f"{fuzz_api}/v1/sweeps",
        headers=headers,
        json={
            "name": "fuzz-owned",
            "base": tiny_job_body,
            "axes": {"method": {"CosFace": {"method.leap.mode": "off"}}},
        },
    )
    assert sweep.status_code == 201, sweep.text
    return {"job_id": job.json()["id"], "sweep_id": sweep.json()["id"]}


def send(case: schemathesis.Case, base_url: str, headers: dict[str, str]) -> None:
    """Send the case, count it, and run the checks on the answer."""
    response = case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT)
    sent[case.operation.label] += 1
    statuses[case.operation.label][response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=headers)


#: Hypothesis' budget and manners for every fuzzed operation: derandomized (a run sends the
#: same cases as the last one), no example database, no health checks on slow servers.
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FUZZ
def test_no_operation_answers_a_server_error(case, fuzz_api, fuzz_owner, owned) -> None:
    """Each case is sent as generated; a case naming a job or sweep id is sent a second
    time with the id of the fuzzer's own row, so the handlers behind the 404 are fuzzed
    too (reads only: a retry would queue the job again)."""
    headers = {"Authorization": f"Bearer {fuzz_owner[1]}"}
    send(case, fuzz_api, headers)
    ids = {
        name: owned[name] for name in ("job_id", "sweep_id") if name in (case.path_parameters or {})
    }
    if ids and case.method.upper() == "GET":
        case.path_parameters = {**case.path_parameters, **ids}
        send(case, fuzz_api, headers)


def fuzz_operation(
    operation: schemathesis.APIOperation, base_url: str, headers: dict[str, str]
) -> None:
    """Send ``MAX_EXAMPLES`` generated cases of one operation, as the parametrized test does
    (without schemathesis' boundary-case phase)."""

    @given(case=operation.as_strategy())
    @FUZZ
    def run(case: schemathesis.Case) -> None:
        send(case, base_url, headers)

    run()


def test_every_operation_was_fuzzed(
    capsys: pytest.CaptureFixture, fuzz_api: str, fuzz_owner: tuple[str, str]
) -> None:
    """The requests sent per operation and the statuses they got, printed; every operation
    with inputs got at least ``MAX_EXAMPLES`` requests (one without inputs has a single
    distinct request). An operation the parametrized test has not fuzzed in this session
    (this test run alone, or before it) is fuzzed here first."""
    headers = {"Authorization": f"Bearer {fuzz_owner[1]}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        if sent[operation.label] == 0:
            fuzz_operation(operation, fuzz_api, headers)
    operations = {
        f"{method.upper()} {path}": bool(spec.get("parameters") or spec.get("requestBody"))
        for path, methods in OPENAPI["paths"].items()
        for method, spec in methods.items()
    }
    with capsys.disabled():
        print(f"\nfuzzed requests: {sum(sent.values())} over {len(operations)} operations")
        for label in operations:
            shown = ", ".join(f"{code}: {n}" for code, n in sorted(statuses[label].items()))
            print(f"  {sent[label]:5d}  {label:32s} {shown}")
    assert {
        label: sent[label]
        for label, has_inputs in operations.items()
        if sent[label] < (MAX_EXAMPLES if has_inputs else 1)
    } == {}
