"""Real headless Chromium (Debian's package) for tests that check what a page draws once its
scripts ran: the API's ``/docs`` and ``/redoc``, the MLflow UI a printed link opens. Network
access beyond the loopback is disabled, as on an offline machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")


def rendered(url: str, folder: Path, budget_ms: int = 15000) -> str:
    """The page's DOM after its scripts ran, as headless Chromium sees it (a fresh browser
    profile in ``folder``: no setting a user's browser might remember)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder}",
            # Anything not on the loopback fails at once, as on an offline machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
