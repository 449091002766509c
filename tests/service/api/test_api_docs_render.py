"""``/docs`` and ``/redoc`` render with no internet: their pages load scripts and styles
from the API itself only, and real headless Chromium (Debian's package), with network
access beyond the loopback API disabled, draws the job operations from them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

CHROMIUM = shutil.which("chromium")


def rendered(url: str, tmp_path) -> str:
    """The page's DOM after its scripts ran, as headless Chromium sees it."""
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
            f"--user-data-dir={tmp_path / 'chromium'}",
            # Anything not on the loopback API fails at once, as on an offline machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_doc_pages_load_nothing_from_outside_the_api(api_url):
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{api_url}{page}").text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, page
        assert all(source.startswith("/") for source in sources), (page, sources)
        for source in sources:
            assert httpx.get(f"{api_url}{source}").status_code == 200, source


def test_swagger_ui_renders_the_job_operations_offline(api_url, tmp_path):
    dom = rendered(f"{api_url}/docs", tmp_path)
    assert 'class="swagger-ui"' in dom
    for operation in ("/v1/jobs", "/v1/jobs/{job_id}/cancel", "/v1/sweeps"):
        assert f'data-path="{operation}"' in dom, operation


def test_redoc_renders_the_job_operations_offline(api_url, tmp_path):
    dom = rendered(f"{api_url}/redoc", tmp_path)
    assert "LEAP training service" in dom
    assert "/v1/jobs/{job_id}/cancel" in dom
