"""The embedded stack: the whole service on one machine with no server installed.

``python -m leap_cli.stack up`` migrates the SQLite job database, makes an API key for the
local user (written to ``$LEAP_HOME/client.yaml`` for the ``leap`` client), then starts
four real processes: the MLflow tracking server on a SQLite store, the API (uvicorn), a
Celery worker whose broker is kombu's SQLAlchemy transport on SQLite, and the maintenance
loop (``jobs.maintenance``: dead-worker reaper, broker reconciler). ``down`` stops them;
``demo`` brings the stack up and trains CosFace against LEAP-CF through the REST API.
Everything lives under ``$LEAP_HOME`` (default ``.leap/``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from leap_core.home import leap_home

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("mlflow", "api", "worker", "maintenance")


def home() -> Path:
    return leap_home()


def stack_dir() -> Path:
    return home() / "stack"


def environment(api_port: int, mlflow_port: int) -> dict[str, str]:
    """The children's environment: the embedded defaults, pinned to absolute paths."""
    base = home()
    return {
        **os.environ,
        "LEAP_HOME": str(base),
        "LEAP_DATABASE_URL": os.environ.get("LEAP_DATABASE_URL", f"sqlite:///{base}/service.db"),
        "LEAP_BROKER_URL": os.environ.get("LEAP_BROKER_URL", f"sqla+sqlite:///{base}/broker.db"),
        "LEAP_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "LEAP_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
        "LEAP_URL": f"http://127.0.0.1:{api_port}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        # MLflow's server otherwise starts a pool of background job runners (for its GenAI
        # features) that a laptop with two cores cannot spare.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def commands(api_port: int, mlflow_port: int) -> dict[str, list[str]]:
    base = home()
    return {
        "mlflow": [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{base}/mlflow.db",
            # Artifacts stay in $LEAP_HOME/mlruns, addressed as files, not proxied through
            # the server: an experiment the server creates is then usable by `leap train`
            # on the same store after `make down` (an mlflow-artifacts: location is not).
            "--default-artifact-root",
            (base / "mlruns").as_uri(),
            "--no-serve-artifacts",
        ],
        "api": [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
        ],
        "worker": [sys.executable, "-m", "worker"],
        "maintenance": [sys.executable, "-m", "jobs.maintenance"],
    }


def running_mlflow_url() -> str | None:
    """The embedded stack's MLflow server, when it is up under this ``$LEAP_HOME``."""
    url_file = stack_dir() / "mlflow.url"
    if pid_of("mlflow") is None or not url_file.is_file():
        return None
    return url_file.read_text().strip() or None


def track_to_running_stack() -> None:
    """Send this process's runs to the stack's MLflow server while it is up (one writer
    for the shared store, and the runs appear in its UI at once), unless
    ``MLFLOW_TRACKING_URI`` says otherwise. After ``make down`` runs go to the same SQLite
    store directly."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return
    url = running_mlflow_url()
    if url is not None:
        os.environ["MLFLOW_TRACKING_URI"] = url


def pid_of(name: str) -> int | None:
    """The pid of a stack process that is still alive, else None."""
    path = stack_dir() / f"{name}.pid"
    if not path.is_file():
        return None
    pid = int(path.read_text())
    _reap(pid)  # a child of this process that exited is a zombie until reaped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink()
        return None
    return pid


def wait_until(check: Callable[[], bool], timeout: float, what: str, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_of(name) is None:
            log = stack_dir() / f"{name}.log"
            tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
            raise SystemExit(f"{what} exited during start-up; the end of {log}:\n{tail}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(
        f"{what} did not become ready within {timeout:.0f}s (see {stack_dir() / name}.log)"
    )


def ensure_key(env: dict[str, str], api_url: str) -> None:
    """An API key for the local user in ``client.yaml`` (kept across restarts)."""
    config = home() / "client.yaml"
    if config.is_file() and (yaml.safe_load(config.read_text()) or {}).get("key"):
        data = yaml.safe_load(config.read_text())
        data["url"] = api_url
    else:
        from jobs.admin import create_key

        data = {"url": api_url, "key": create_key("local", env["LEAP_DATABASE_URL"])}
    config.write_text(yaml.safe_dump(data))
    config.chmod(0o600)


def up(api_port: int, mlflow_port: int) -> None:
    stack_dir().mkdir(parents=True, exist_ok=True)
    env = environment(api_port, mlflow_port)
    os.environ.update({k: env[k] for k in ("LEAP_HOME", "LEAP_DATABASE_URL")})
    from jobs.migrate import upgrade

    upgrade(env["LEAP_DATABASE_URL"])
    ensure_key(env, env["LEAP_URL"])
    for name, command in commands(api_port, mlflow_port).items():
        if pid_of(name) is not None:
            print(f"{name}: already running (pid {pid_of(name)})")
            continue
        with open(stack_dir() / f"{name}.log", "a") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        (stack_dir() / f"{name}.pid").write_text(str(process.pid))
    mlflow_url, api_url = env["LEAP_MLFLOW_UI_URL"], env["LEAP_URL"]
    (stack_dir() / "mlflow.url").write_text(mlflow_url)
    wait_until(
        lambda: httpx.get(f"{mlflow_url}/health").status_code == 200, 120, "MLflow server", "mlflow"
    )
    # The experiment exists before the worker's first jobs, which may start together.
    from leap_core.tracking.store import prepare_store

    prepare_store(env["LEAP_MLFLOW_TRACKING_URI"])
    wait_until(lambda: httpx.get(f"{api_url}/readyz").status_code == 200, 60, "API", "api")
    worker_log = stack_dir() / "worker.log"
    wait_until(lambda: " ready." in worker_log.read_text(), 120, "worker", "worker")
    from leap_core.tracking.links import experiment_link

    print(
        f"LEAP service up: API {api_url} (docs {api_url}/docs), MLflow UI "
        f"{experiment_link(mlflow_url)}; "
        f"client config {home() / 'client.yaml'}; logs in {stack_dir()}"
    )


def down() -> None:
    """Stop the stack's processes (each was started in its own process group)."""
    for name in reversed(SERVICES):
        pid = pid_of(name)
        if pid is None:
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pid_of(name) is not None:
            _reap(pid)
            time.sleep(0.2)
        if pid_of(name) is not None:
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
            _reap(pid)
        (stack_dir() / f"{name}.pid").unlink(missing_ok=True)
        print(f"{name}: stopped")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def status() -> None:
    for name in SERVICES:
        pid = pid_of(name)
        print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m leap_cli.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["up", "down", "status", "demo"])
    parser.add_argument(
        "--api-port", type=int, default=int(os.environ.get("LEAP_API_PORT", "8000"))
    )
    parser.add_argument(
        "--mlflow-port", type=int, default=int(os.environ.get("LEAP_MLFLOW_PORT", "5000"))
    )
    parser.add_argument(
        "--spec",
        type=Path,
        default=ROOT / "examples" / "tiny_synthetic.yaml",
        help="demo: the spec trained as CosFace and as LEAP-CF",
    )
    args = parser.parse_args(argv)
    if args.action == "up":
        up(args.api_port, args.mlflow_port)
    elif args.action == "down":
        down()
    elif args.action == "status":
        status()
    else:
        up(args.api_port, args.mlflow_port)
        from leap_cli.demo import run_demo

        os.environ.update(environment(args.api_port, args.mlflow_port))
        sys.exit(run_demo(args.spec))


if __name__ == "__main__":
    main()
