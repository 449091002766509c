"""Attacks on the real API, each with the exact refusal it must get: data paths that try
to leave the allowed data root (``..``, absolute paths, ``~``, symlinks planted inside the
root), in a job and in every part of a sweep; odd ids and cursors in URLs; another owner's
jobs and sweeps (always a 404, exactly as for an id that does not exist, and their rows
unchanged afterwards); broken, foreign or forged credentials; and the bodies that once
made the API answer 500 (NUL bytes, unpaired surrogates, NaN, integers beyond the database
columns, deep nesting), each now a 422 naming the field.

Every attack is one entry of :data:`ATTACKS`, run by one parametrized test; one test runs
them all in one pass and prints how many were tried and refused. The module has an API
process of its own whose queue no worker consumes (the session's worker would otherwise
train, and so change, the victim's jobs), and whose log must hold no traceback when the
module ends.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from jobs.admin import create_key, revoke_key
from jobs.db import session_scope
from jobs.models import ApiKey, Job, JobEvent, Sweep
from tests.service.conftest import TINY_JOB
from tests.service.processes import extra_api

UNAUTHORIZED = "missing or invalid API key (Authorization: Bearer <key>)"
OUTSIDE = "must be inside the allowed data directories"
NUL = "must not contain NUL characters (\\u0000)"
ID_MISMATCH = "String should match pattern '^[0-9a-f]{32}$'"
METHODS = {
    "method": {"CosFace": {"method.leap.mode": "off"}, "LEAP-CF": {"method.leap.mode": "full"}}
}
FIRST_CELL, SECOND_CELL = "cells.method=CosFace__seed0", "cells.method=LEAP-CF__seed0"


@dataclass
class Target:
    """What the attacks aim at: an attacker's client and a victim's rows."""

    api_url: str
    attacker: httpx.Client
    attacker_owner: str
    attacker_token: str
    own_job: str
    data_root: Path
    tiny_root: str
    queued_job: str
    cancelled_job: str
    sweep: dict
    revoked: str = ""

    def job(self, **sections: dict) -> dict:
        """The tiny job on the tiny dataset, with sections' fields replaced."""
        body = copy.deepcopy(
            {**TINY_JOB, "dataset": {**TINY_JOB["dataset"], "root": self.tiny_root}}
        )
        for section, fields in sections.items():
            body[section] = {**body.get(section, {}), **fields}
        return body

    def face_job(self, lfw_root: str, pairs_file: str) -> dict:
        return self.job(eval={"protocol": "face", "lfw_root": lfw_root, "pairs_file": pairs_file})

    def sweep_body(self, **fields: Any) -> dict:
        return {
            "name": "attack-sweep",
            "base": self.job(),
            "axes": copy.deepcopy(METHODS),
            "seeds": [0],
            **fields,
        }

    def raw(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with the attacker's key (unless ``headers`` replaces it)."""
        headers = kwargs.pop("headers", {"Authorization": f"Bearer {self.attacker_token}"})
        return httpx.request(method, f"{self.api_url}{url}", headers=headers, timeout=30, **kwargs)

    def post_json(self, url: str, text: str) -> httpx.Response:
        """A body sent as written: JSON that ``json.dumps`` would not produce (NaN,
        ``\\ud800``) is what Python's parser on the server still accepts."""
        return self.raw(
            "POST",
            url,
            content=text.encode(),
            headers={
                "Authorization": f"Bearer {self.attacker_token}",
                "Content-Type": "application/json",
            },
        )


@dataclass(frozen=True)
class Refusal:
    """The answer an attack must get: its status; for a 422 the fields named, in order,
    with a part of their message and the inputs echoed; for others the exact detail; for
    a list, ids that must be absent and ids that must be there (so it is not just empty)."""

    status: int
    fields: tuple[str, ...] = ()
    message: str | None = None
    inputs: tuple[Any, ...] | None = None
    detail: str | None = None
    absent: frozenset[str] = frozenset()
    present: frozenset[str] = frozenset()


def cursor(raw: str) -> str:
    """A cursor as the API encodes them, around whatever text the attacker chose."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def assert_refused(response: httpx.Response, expected: Refusal) -> None:
    assert response.status_code == expected.status, response.text
    body = response.json()
    if expected.fields:
        errors = body["errors"]
        assert [error["path"] for error in errors] == list(expected.fields), errors
        if expected.message is not None:
            assert all(expected.message in error["message"] for error in errors), errors
        if expected.inputs is not None:
            assert [error.get("input") for error in errors] == list(expected.inputs), errors
    if expected.detail is not None:
        assert body["detail"] == expected.detail
    if expected.status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if expected.absent or expected.present:
        listed = {item["id"] for item in body["items"]}
        assert not listed & expected.absent, listed & expected.absent
        assert expected.present <= listed, expected.present - listed


Attack = Callable[[Target], tuple[httpx.Response, Refusal]]
ATTACKS: dict[str, Attack] = {}


def register(name: str, attack: Attack) -> None:
    assert name not in ATTACKS, name
    ATTACKS[name] = attack


# --- a job's data paths ---------------------------------------------------------------


def escaping_root(value: str) -> Attack:
    def attack(t: Target) -> tuple[httpx.Response, Refusal]:
        root = value.format(root=t.data_root)
        return (
            t.raw("POST", "/v1/jobs", json=t.job(dataset={"root": root})),
            Refusal(422, ("dataset.root",), OUTSIDE, (root,)),
        )

    return attack


for name, value in {
    "dotdot through a real folder": "tiny/../../..",
    "dotdot deep to /etc": "../../../../../../../../etc",
    "absolute path inside, dotdot out": "{root}/tiny/../../outside",
    "sibling sharing the root's prefix": "{root}-evil",
    "filesystem root": "/",
    "the API's own environment": "/proc/self/environ",
    "home": "~",
    "home of root": "~root",
    "home of an unknown user": "~no-such-user-leap/data",
    "symlink inside pointing out": "sec-out",
    "symlink inside pointing out, absolute": "{root}/sec-out",
    "symlink to a symlink pointing out": "sec-chain/ssl",
    "symlink to the root's parent": "sec-up",
    "symlink loop": "sec-loop",
}.items():
    register(f"dataset.root: {name}", escaping_root(value))

register(
    "dataset.root: NUL byte",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.job(dataset={"root": "tiny\x00/../../../etc"})),
        Refusal(422, ("dataset.root",), NUL, ("tiny\x00/../../../etc",)),
    ),
)
register(
    "eval.lfw_root: absolute outside",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.face_job("/etc", "lfw/pairs.txt")),
        Refusal(422, ("eval.lfw_root",), OUTSIDE, ("/etc",)),
    ),
)
register(
    "eval.lfw_root: dotdot",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.face_job("lfw/../../..", "lfw/pairs.txt")),
        Refusal(422, ("eval.lfw_root",), OUTSIDE, ("lfw/../../..",)),
    ),
)
register(
    "eval.pairs_file: dotdot to /etc/passwd",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.face_job("lfw", "../../../../etc/passwd")),
        Refusal(422, ("eval.pairs_file",), OUTSIDE, ("../../../../etc/passwd",)),
    ),
)
register(
    "eval.pairs_file: symlink inside pointing at /etc/passwd",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.face_job("lfw", "sec-passwd")),
        Refusal(422, ("eval.pairs_file",), OUTSIDE, ("sec-passwd",)),
    ),
)
register(
    "eval: both paths escape",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.face_job("~", "/etc/passwd")),
        Refusal(422, ("eval.lfw_root", "eval.pairs_file"), OUTSIDE, ("~", "/etc/passwd")),
    ),
)

# --- a sweep's data paths: base, axes, set, overrides -----------------------------------

register(
    "sweep: base spec's dataset.root outside",
    lambda t: (
        t.raw("POST", "/v1/sweeps", json=t.sweep_body(base=t.job(dataset={"root": "/etc"}))),
        Refusal(422, (f"{FIRST_CELL}.dataset.root",), OUTSIDE, ("/etc",)),
    ),
)
register(
    "sweep: axis sets dataset.root with dotdot",
    lambda t: (
        t.raw(
            "POST",
            "/v1/sweeps",
            json=t.sweep_body(
                axes={
                    "method": {
                        "CosFace": {"method.leap.mode": "off"},
                        "LEAP-CF": {"method.leap.mode": "full", "dataset.root": "tiny/../../.."},
                    }
                }
            ),
        ),
        Refusal(422, (f"{SECOND_CELL}.dataset.root",), OUTSIDE, ("tiny/../../..",)),
    ),
)
register(
    "sweep: axis sets dataset.root to a symlink pointing out",
    lambda t: (
        t.raw(
            "POST",
            "/v1/sweeps",
            json=t.sweep_body(axes={"data": {"tiny": {}, "planted": {"dataset.root": "sec-out"}}}),
        ),
        Refusal(422, ("cells.data=planted__seed0.dataset.root",), OUTSIDE, ("sec-out",)),
    ),
)
register(
    "sweep: set puts eval.lfw_root in ~",
    lambda t: (
        t.raw(
            "POST",
            "/v1/sweeps",
            json=t.sweep_body(
                set={
                    "eval.protocol": "face",
                    "eval.lfw_root": "~",
                    "eval.pairs_file": "lfw/pairs.txt",
                }
            ),
        ),
        Refusal(422, (f"{FIRST_CELL}.eval.lfw_root",), OUTSIDE, ("~",)),
    ),
)
register(
    "sweep: overrides put eval.pairs_file at /etc/passwd",
    lambda t: (
        t.raw(
            "POST",
            "/v1/sweeps",
            json=t.sweep_body(
                overrides={
                    "eval.protocol": "face",
                    "eval.lfw_root": "lfw",
                    "eval.pairs_file": "/etc/passwd",
                }
            ),
        ),
        Refusal(422, (f"{FIRST_CELL}.eval.pairs_file",), OUTSIDE, ("/etc/passwd",)),
    ),
)

# --- odd ids and cursors in URLs ---------------------------------------------------------

register(
    "job id: encoded slash dotdot",
    lambda t: (t.raw("GET", "/v1/jobs/..%2F.."), Refusal(404, detail="Not Found")),
)
register(
    "job id: encoded dotdot",
    lambda t: (
        t.raw("GET", "/v1/jobs/%2e%2e"),
        Refusal(422, ("path.job_id",), ID_MISMATCH, ("..",)),
    ),
)
register(
    "job id: double-encoded dotdot on cancel",
    lambda t: (
        t.raw("POST", "/v1/jobs/..%252F../cancel"),
        Refusal(422, ("path.job_id",), ID_MISMATCH, ("..%2F..",)),
    ),
)
register(
    "job id: NUL byte",
    lambda t: (
        t.raw("GET", "/v1/jobs/%00"),
        Refusal(422, ("path.job_id",), ID_MISMATCH, ("\x00",)),
    ),
)
register(
    "job id: NUL byte on events",
    lambda t: (t.raw("GET", "/v1/jobs/a%00b/events"), Refusal(422, ("path.job_id",), ID_MISMATCH)),
)
register(
    "job id: NUL byte on retry",
    lambda t: (t.raw("POST", "/v1/jobs/%00/retry"), Refusal(422, ("path.job_id",), ID_MISMATCH)),
)
register(
    "job id: 10 000 characters",
    lambda t: (
        t.raw("GET", "/v1/jobs/" + "a" * 10_000),
        Refusal(422, ("path.job_id",), ID_MISMATCH),
    ),
)
register(
    "job id: SQL",
    lambda t: (
        t.raw("GET", "/v1/jobs/' OR '1'='1"),
        Refusal(422, ("path.job_id",), ID_MISMATCH, ("' OR '1'='1",)),
    ),
)
register(
    "job id: the victim's in capitals",
    lambda t: (
        t.raw("GET", f"/v1/jobs/{t.queued_job.upper()}"),
        Refusal(422, ("path.job_id",), ID_MISMATCH),
    ),
)


def missing_job(t: Target) -> tuple[httpx.Response, Refusal]:
    missing = uuid.uuid4().hex
    return t.raw("GET", f"/v1/jobs/{missing}"), Refusal(404, detail=f"job {missing} not found")


register("job id: well-formed, no such job", missing_job)
register(
    "sweep id: encoded slash dotdot",
    lambda t: (t.raw("GET", "/v1/sweeps/..%2F.."), Refusal(404, detail="Not Found")),
)
register(
    "sweep id: NUL byte",
    lambda t: (t.raw("GET", "/v1/sweeps/%00"), Refusal(422, ("path.sweep_id",), ID_MISMATCH)),
)
register(
    "events: after beyond a 64-bit id",
    lambda t: (
        t.raw("GET", f"/v1/jobs/{t.own_job}/events", params={"after": 2**63}),
        Refusal(422, ("query.after",), "less than or equal to 9223372036854775807"),
    ),
)
register(
    "events follow: after beyond a 64-bit id",
    lambda t: (
        t.raw("GET", f"/v1/jobs/{t.own_job}/events", params={"after": 2**64, "follow": "true"}),
        Refusal(422, ("query.after",), "less than or equal to 9223372036854775807"),
    ),
)
for what, url in {"jobs": "/v1/jobs", "sweeps": "/v1/sweeps"}.items():
    for label, raw in {
        "NUL byte": "2024-01-01T00:00:00+00:00|\x00",
        "SQL": "2024-01-01T00:00:00+00:00|' OR 1=1 --",
    }.items():

        def crafted(t: Target, url: str = url, raw: str = raw) -> tuple[httpx.Response, Refusal]:
            value = cursor(raw)
            return (
                t.raw("GET", url, params={"cursor": value}),
                Refusal(422, detail=f"cursor: not a cursor from this API (got {value!r})"),
            )

        register(f"{what} cursor: {label} in the id", crafted)

# --- another owner's rows: 404 as for a missing id, lists without them -------------------


def job_not_found(job_id: str) -> Refusal:
    return Refusal(404, detail=f"job {job_id} not found")


register(
    "victim's job: get",
    lambda t: (t.raw("GET", f"/v1/jobs/{t.queued_job}"), job_not_found(t.queued_job)),
)
register(
    "victim's job: cancel",
    lambda t: (t.raw("POST", f"/v1/jobs/{t.queued_job}/cancel"), job_not_found(t.queued_job)),
)
register(
    "victim's cancelled job: retry",
    lambda t: (t.raw("POST", f"/v1/jobs/{t.cancelled_job}/retry"), job_not_found(t.cancelled_job)),
)
register(
    "victim's job: events",
    lambda t: (t.raw("GET", f"/v1/jobs/{t.queued_job}/events"), job_not_found(t.queued_job)),
)
register(
    "victim's job: events followed",
    lambda t: (
        t.raw("GET", f"/v1/jobs/{t.queued_job}/events", params={"follow": "true"}),
        job_not_found(t.queued_job),
    ),
)
register(
    "victim's sweep job: get",
    lambda t: (
        t.raw("GET", f"/v1/jobs/{t.sweep['cells'][1]['job_id']}"),
        job_not_found(t.sweep["cells"][1]["job_id"]),
    ),
)
register(
    "victim's sweep job: cancel",
    lambda t: (
        t.raw("POST", f"/v1/jobs/{t.sweep['cells'][0]['job_id']}/cancel"),
        job_not_found(t.sweep["cells"][0]["job_id"]),
    ),
)
register(
    "victim's sweep: get",
    lambda t: (
        t.raw("GET", f"/v1/sweeps/{t.sweep['id']}"),
        Refusal(404, detail=f"sweep {t.sweep['id']} not found"),
    ),
)


def victim_jobs(t: Target) -> frozenset[str]:
    return frozenset(
        {t.queued_job, t.cancelled_job, *(cell["job_id"] for cell in t.sweep["cells"])}
    )


register(
    "list: jobs",
    lambda t: (
        t.raw("GET", "/v1/jobs", params={"limit": 200}),
        Refusal(200, absent=victim_jobs(t), present=frozenset({t.own_job})),
    ),
)
register(
    "list: queued jobs",
    lambda t: (
        t.raw("GET", "/v1/jobs", params={"status": "queued", "limit": 200}),
        Refusal(200, absent=victim_jobs(t)),
    ),
)
register(
    "list: jobs tagged with the victim's sweep",
    lambda t: (
        t.raw("GET", "/v1/jobs", params={"tag": f"sweep:{t.sweep['id']}"}),
        Refusal(200, absent=victim_jobs(t)),
    ),
)
register(
    "list: jobs from a cursor at the victim's job",
    lambda t: (
        t.raw(
            "GET",
            "/v1/jobs",
            params={"cursor": cursor(f"9999-01-01T00:00:00+00:00|{t.queued_job}")},
        ),
        Refusal(200, absent=victim_jobs(t), present=frozenset({t.own_job})),
    ),
)
register(
    "list: sweeps",
    lambda t: (
        t.raw("GET", "/v1/sweeps", params={"limit": 200}),
        Refusal(200, absent=frozenset({t.sweep["id"]})),
    ),
)

# --- credentials -------------------------------------------------------------------------


def with_authorization(
    value: Callable[[Target], bytes | None],
    method: str = "GET",
    url: Callable[[Target], str] = lambda t: "/v1/jobs",
    body: Callable[[Target], dict] | None = None,
) -> Attack:
    def attack(t: Target) -> tuple[httpx.Response, Refusal]:
        header = value(t)
        headers = {} if header is None else {"Authorization": header}
        sent = {"json": body(t)} if body else {}
        return t.raw(method, url(t), headers=headers, **sent), Refusal(401, detail=UNAUTHORIZED)

    return attack


for name, header in {
    "none": lambda t: None,
    "empty": lambda t: b"",
    "Bearer without a key": lambda t: b"Bearer",
    "Basic credentials": lambda t: b"Basic " + base64.b64encode(b"admin:admin"),
    "a valid key under the Token scheme": lambda t: f"Token {t.attacker_token}".encode(),
    "a valid key with a character more": lambda t: f"Bearer {t.attacker_token}x".encode(),
    "a valid key with a character less": lambda t: f"Bearer {t.attacker_token[:-1]}".encode(),
    "a valid key and another word": lambda t: f"Bearer {t.attacker_token} x".encode(),
    "a valid key's listed prefix": lambda t: f"Bearer {t.attacker_token[:12]}".encode(),
    "a valid key's stored SHA-256": lambda t: (
        f"Bearer {hashlib.sha256(t.attacker_token.encode()).hexdigest()}".encode()
    ),
    "a 12 000-character key": lambda t: b"Bearer leap_" + b"x" * 12_000,
    "a key with a non-ASCII byte": lambda t: b"Bearer leap_\xe9t\xe9",
    "a revoked key": lambda t: f"Bearer {t.revoked}".encode(),
}.items():
    register(f"authorization: {name}", with_authorization(header))
register(
    "authorization: none, on submitting a valid job",
    with_authorization(lambda t: None, "POST", lambda t: "/v1/jobs", lambda t: t.job()),
)
register(
    "authorization: none, on the victim's sweep",
    with_authorization(lambda t: None, "GET", lambda t: f"/v1/sweeps/{t.sweep['id']}"),
)
register(
    "authorization: Basic, on cancelling the victim's job",
    with_authorization(
        lambda t: b"Basic " + base64.b64encode(b"admin:admin"),
        "POST",
        lambda t: f"/v1/jobs/{t.queued_job}/cancel",
    ),
)

# --- bodies that made the API answer 500 ---------------------------------------------

register(
    "body: NUL byte in the job's name",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.job() | {"name": "a\x00b"}),
        Refusal(422, ("name",), NUL, ("a\x00b",)),
    ),
)
register(
    "body: NUL byte in a tag",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.job() | {"tags": ["ok", "x\x00"]}),
        Refusal(422, ("tags.1",), NUL, ("x\x00",)),
    ),
)
register(
    "body: NUL byte in a sweep's axis label (a job's name)",
    lambda t: (
        t.raw("POST", "/v1/sweeps", json=t.sweep_body(axes={"method": {"Cos\x00": {}}})),
        Refusal(422, ("axes.method.Cos\x00",), f"field name {NUL}", ("Cos\x00",)),
    ),
)
register(
    "body: unpaired surrogate in a sweep's axis label",
    lambda t: (
        t.post_json(
            "/v1/sweeps",
            json.dumps(t.sweep_body(axes={"method": {"LABEL": {}}})).replace("LABEL", "\\ud800"),
        ),
        Refusal(422, ("axes.method.\ud800",), "unpaired surrogate", ("\ud800",)),
    ),
)
register(
    "body: unpaired surrogate in a typed field",
    lambda t: (
        t.post_json("/v1/jobs", '{"train": {"device": "\\udfff"}}'),
        Refusal(
            422, ("train.device",), "unable to parse raw data as a unicode string", ("\udfff",)
        ),
    ),
)
register(
    "body: 1e400 (infinity) as the learning rate",
    lambda t: (
        t.post_json(
            "/v1/jobs",
            json.dumps(t.job(train={"optimizer": {"lr": 0.5}})).replace('"lr": 0.5', '"lr": 1e400'),
        ),
        Refusal(422, ("train.optimizer.lr",), "must be a finite number", ("inf",)),
    ),
)
register(
    "body: NaN as a sweep's base value an axis overwrites",
    lambda t: (
        t.post_json(
            "/v1/sweeps",
            json.dumps(
                t.sweep_body(
                    axes={"lr": {"a": {"train.optimizer.lr": 0.1}}},
                    base=t.job(train={"optimizer": {"lr": 0.5}}),
                )
            ).replace('"lr": 0.5', '"lr": NaN'),
        ),
        Refusal(422, ("base.train.optimizer.lr",), "must be a finite number", ("nan",)),
    ),
)
register(
    "body: NaN in an unknown field (echoed in the 422)",
    lambda t: (
        t.post_json("/v1/jobs", '{"train": {"bogus": NaN}}'),
        Refusal(422, ("train.bogus",), "Extra inputs are not permitted", ("nan",)),
    ),
)
register(
    "body: epochs beyond a 32-bit column",
    lambda t: (
        t.raw("POST", "/v1/jobs", json=t.job(train={"epochs": 2**31})),
        Refusal(422, ("train.epochs",), "less than or equal to 2147483647", (2**31,)),
    ),
)
register(
    "body: sweep seed beyond a 32-bit column",
    lambda t: (
        t.raw("POST", "/v1/sweeps", json=t.sweep_body(seeds=[0, 2**40], seed_fields=[])),
        Refusal(422, ("seeds",), "must be distinct integers from 0 to 2147483647"),
    ),
)
register(
    "body: a sweep's set nested 900 deep",
    lambda t: (
        t.post_json(
            "/v1/sweeps",
            json.dumps(t.sweep_body(set={"name": "DEEP"})).replace('"DEEP"', "[" * 900 + "]" * 900),
        ),
        Refusal(422, ("set.name" + ".0" * 30,), "nested deeper than 32 levels"),
    ),
)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(service_env: dict[str, str], tiny_root: str) -> Path:
    """Symlinks planted inside the data root: out to /etc and /etc/passwd, to the root's
    parent, through another symlink, in a loop, and one that stays inside."""
    root = Path(service_env["LEAP_DATA_ROOTS"]).resolve()
    links = {
        "sec-out": Path("/etc"),
        "sec-passwd": Path("/etc/passwd"),
        "sec-chain": root / "sec-out",
        "sec-up": root.parent,
        "sec-loop": root / "sec-loop",
        "sec-in": Path(tiny_root),
    }
    for name, points_to in links.items():
        if not (root / name).is_symlink():
            os.symlink(points_to, root / name)
    return root


@pytest.fixture(scope="module")
def own_api(service_env: dict[str, str]) -> Iterator[str]:
    """This module's API: the session's settings, a queue that nothing consumes."""
    with extra_api(service_env, queue=f"leap-security-{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture(scope="module")
def client_of(own_api: str, database_url: str) -> Iterator[Callable[[str], httpx.Client]]:
    """``client_of(owner)``: a client of this module's API with a fresh key of ``owner``."""
    clients: list[httpx.Client] = []

    def build(owner: str) -> httpx.Client:
        token = create_key(owner, database_url)
        clients.append(
            httpx.Client(base_url=own_api, timeout=30, headers={"Authorization": f"Bearer {token}"})
        )
        return clients[-1]

    yield build
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def target(
    own_api: str,
    database_url: str,
    tiny_root: str,
    planted: Path,
    client_of: Callable[[str], httpx.Client],
) -> Iterator[Target]:
    """A victim with a queued job, a cancelled job and a two-job sweep; an attacker with a
    key and one (cancelled) job of its own. The victim's jobs are cancelled at the end."""
    victim = client_of(f"victim-{uuid.uuid4().hex[:8]}")
    attacker_owner = f"attacker-{uuid.uuid4().hex[:8]}"
    attacker = client_of(attacker_owner)
    attacker_token = attacker.headers["Authorization"].removeprefix("Bearer ")
    t = Target(
        api_url=own_api,
        attacker=attacker,
        attacker_owner=attacker_owner,
        attacker_token=attacker_token,
        own_job="",
        data_root=planted,
        tiny_root=tiny_root,
        queued_job="",
        cancelled_job="",
        sweep={},
    )
    t.revoked = create_key(f"revoked-{uuid.uuid4().hex[:8]}", database_url)
    revoke_key(t.revoked, database_url)  # never used, so no API process has it cached
    t.own_job = attacker.post("/v1/jobs", json=t.job()).json()["id"]
    attacker.post(f"/v1/jobs/{t.own_job}/cancel").raise_for_status()
    t.queued_job = victim.post("/v1/jobs", json=t.job()).json()["id"]
    t.cancelled_job = victim.post("/v1/jobs", json=t.job()).json()["id"]
    victim.post(f"/v1/jobs/{t.cancelled_job}/cancel").raise_for_status()
    t.sweep = victim.post("/v1/sweeps", json=t.sweep_body()).json()
    yield t
    for job_id in [t.queued_job, *(cell["job_id"] for cell in t.sweep["cells"])]:
        victim.post(f"/v1/jobs/{job_id}/cancel")


def snapshot(database_url: str, job_ids: set[str]) -> dict[str, tuple]:
    """Each job's status, attempt, last change and number of events."""
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Job.id, Job.status, Job.attempt, Job.updated_at, func.count(JobEvent.id))
            .join(JobEvent, JobEvent.job_id == Job.id)
            .where(Job.id.in_(job_ids))
            .group_by(Job.id)
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_refused(name: str, target: Target) -> None:
    response, expected = ATTACKS[name](target)
    assert_refused(response, expected)


def test_symlinks_that_stay_inside_the_data_root_are_accepted(
    target: Target, client_of: Callable[[str], httpx.Client]
) -> None:
    """Refusals come from where a path resolves, not from its spelling: a symlink inside
    the root to a folder inside, and ``..`` that climbs out through a symlink and back in,
    are both fine. A relative path is stored resolved; an absolute one as written, so the
    worker resolves its symlinks again."""
    client = client_of("symlinks-inside")
    tiny = str(Path(target.tiny_root).resolve())
    for root, stored in [
        ("sec-in", tiny),
        (f"{target.data_root}/sec-in", None),
        ("sec-up/data/tiny", tiny),
    ]:
        job = client.post("/v1/jobs", json=target.job(dataset={"root": root}))
        assert job.status_code == 201, job.text
        assert job.json()["spec"]["dataset"]["root"] == (stored or root)
        assert client.post(f"/v1/jobs/{job.json()['id']}/cancel").status_code == 200


def test_an_idempotency_key_is_per_owner(
    target: Target, client_of: Callable[[str], httpx.Client]
) -> None:
    """Bob reusing Alice's Idempotency-Key (same body, then another body) gets jobs of
    his own, never hers and never a 409 about hers; the same holds for sweeps."""
    alice, bob = client_of("idem-alice"), client_of("idem-bob")
    job_body = target.job
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
    hers = alice.post("/v1/jobs", json=job_body(), headers=key)
    his = bob.post("/v1/jobs", json=job_body(), headers=key)
    assert (hers.status_code, his.status_code) == (201, 201), his.text
    assert his.json()["id"] != hers.json()["id"]
    assert bob.post("/v1/jobs", json=job_body(), headers=key).json()["id"] == his.json()["id"]
    assert bob.get(f"/v1/jobs/{hers.json()['id']}").status_code == 404
    sweep = {"name": "idem", "base": job_body(), "axes": {"m": {"a": {}}}}
    her_sweep = alice.post("/v1/sweeps", json=sweep, headers=key)
    his_sweep = bob.post("/v1/sweeps", json={**sweep, "seeds": [3]}, headers=key)
    assert (her_sweep.status_code, his_sweep.status_code) == (201, 201), his_sweep.text
    assert his_sweep.json()["id"] != her_sweep.json()["id"]
    for client, job_ids in [(alice, [hers.json()["id"]]), (bob, [his.json()["id"]])]:
        for job_id in job_ids:
            client.post(f"/v1/jobs/{job_id}/cancel")
    for client, created in [(alice, her_sweep), (bob, his_sweep)]:
        for cell in created.json()["cells"]:
            client.post(f"/v1/jobs/{cell['job_id']}/cancel")


def test_a_job_name_longer_than_its_column_is_cut_not_a_500(
    target: Target, client_of: Callable[[str], httpx.Client]
) -> None:
    """The default name comes from the dataset folder's name: a 250-character folder gave
    a 270-character name and a 500 at the INSERT into ``jobs.name`` (200 characters)."""
    client = client_of("long-name")
    folder = "f" * 250
    (target.data_root / folder).mkdir(exist_ok=True)  # a root that names nothing is a 422
    body = target.job(dataset={"format": "folders", "root": folder})
    del body["name"]
    job = client.post("/v1/jobs", json=body)
    assert job.status_code == 201, job.text
    assert job.json()["name"] == f"{folder} full CosFace seed0"[:200]
    client.post(f"/v1/jobs/{job.json()['id']}/cancel")


def test_keys_are_stored_only_as_their_sha256(target: Target, database_url: str) -> None:
    """The table holds the token's SHA-256 and its 12-character listed prefix, never the
    token; and the stored hash does not work as a key (an attack above)."""
    with session_scope(database_url) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.owner == target.attacker_owner)).one()
        stored = (row.owner, row.prefix, row.key_hash)
    assert stored[2] == hashlib.sha256(target.attacker_token.encode()).hexdigest()
    assert stored[1] == target.attacker_token[:12]
    assert target.attacker_token not in stored


def test_the_attacks_changed_and_stored_nothing(target: Target, database_url: str) -> None:
    """Every attack on another owner's jobs and sweeps, run here on a snapshot of the
    victim's rows: afterwards the victim's jobs have the same status, attempt, last change
    and events as before, and the attacker owns only the job it made itself."""
    before = snapshot(database_url, set(victim_jobs(target)))
    cross_owner = [name for name in ATTACKS if name.startswith("victim's")]
    assert cross_owner
    for name in cross_owner:
        response, expected = ATTACKS[name](target)
        assert_refused(response, expected)
    assert snapshot(database_url, set(victim_jobs(target))) == before
    assert {status for status, *_ in before.values()} == {"queued", "cancelled"}
    with session_scope(database_url) as session:
        jobs = session.scalars(select(Job.id).where(Job.owner == target.attacker_owner)).all()
        sweeps = session.scalar(select(func.count()).where(Sweep.owner == target.attacker_owner))
    assert (jobs, sweeps) == ([target.own_job], 0)


def test_a_header_beyond_the_servers_limit_is_cut_off_before_the_app(target: Target) -> None:
    """A 70 000-character key is past uvicorn's 16 KiB limit on an incomplete request
    head: depending on how the bytes arrive, the server either answers 400 itself or
    closes the connection while the client is still writing (a reset). Either way the
    request never reaches the app, and the API keeps serving."""
    try:
        response = target.raw(
            "GET", "/v1/jobs", headers={"Authorization": b"Bearer leap_" + b"x" * 70_000}
        )
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        pass
    else:
        assert response.status_code in (400, 401), response.text
    assert httpx.get(f"{target.api_url}/healthz").status_code == 200


def test_every_attack_is_refused_in_one_pass(capsys: pytest.CaptureFixture, target: Target) -> None:
    """The count: every attack of :data:`ATTACKS`, run here one after another, gets exactly
    the refusal it should (the parametrized test gives each its own report)."""
    refused = []
    for name, attack in ATTACKS.items():
        response, expected = attack(target)
        assert_refused(response, expected)
        refused.append(name)
    with capsys.disabled():
        print(f"\nattacks tried: {len(ATTACKS)}, refused as expected: {len(refused)}")
    assert refused == list(ATTACKS)
