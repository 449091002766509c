"""How long the ``leap`` command takes to answer, against importing its own dependencies.

A real API process on a SQLite job database (no broker consumer needed) holds one job;
then, interleaved round by round so that load on the machine hits every command alike,
each command runs as a fresh process: importing the CLI's own dependencies (typer, rich,
httpx, yaml, pydantic: the floor any Python CLI of this kind pays), ``leap --help``,
``leap list`` and ``leap status ID`` (both real HTTP requests). Prints medians and each
command's ratio to the floor; the target is under 2x.

    python benchmarks/cli_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LEAP = [sys.executable, "-c", "import sys; from leap_cli import app; sys.argv[0] = 'leap'; app()"]
FLOOR = [
    sys.executable,
    "-c",
    "import typer, rich.console, rich.table, rich.progress, rich.markdown, httpx, yaml, pydantic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leap-cli-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "LEAP_HOME": str(home),
        "LEAP_DATABASE_URL": f"sqlite:///{home / 'service.db'}",
        "LEAP_BROKER_URL": f"sqla+sqlite:///{home / 'broker.db'}",
        "LEAP_DATA_ROOTS": str(home / "data"),
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update({k: env[k] for k in ("LEAP_HOME", "LEAP_DATABASE_URL")})
    from jobs.admin import create_key
    from jobs.migrate import upgrade

    upgrade(env["LEAP_DATABASE_URL"])
    token = create_key("bench", env["LEAP_DATABASE_URL"])
    env |= {"LEAP_URL": f"http://127.0.0.1:{port}", "LEAP_API_KEY": token}
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{env['LEAP_URL']}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        spec = yaml_spec(home)
        job_id = subprocess.run(
            [*LEAP, "submit", str(spec)], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        commands = {
            "import the CLI's dependencies": FLOOR,
            "leap --help": [*LEAP, "--help"],
            "leap list": [*LEAP, "list"],
            f"leap status {job_id[:8]}…": [*LEAP, "status", job_id],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(timed(command, env))
        floor = statistics.median(times["import the CLI's dependencies"])
        print(f"{'command':36} {'median s':>9} {'x floor':>8}")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:36} {median:9.3f} {median / floor:8.2f}")
    finally:
        api.terminate()
        api.wait(10)


def yaml_spec(home: Path) -> Path:
    spec = home / "tiny.yaml"
    spec.write_text((ROOT / "examples" / "tiny_synthetic.yaml").read_text())
    return spec


if __name__ == "__main__":
    main()
