"""``/docs`` and ``/redoc`` render with no internet: their pages load scripts and styles
from the API itself only, and real headless Chromium (Debian's package), with network
access beyond the loopback API disabled, draws the job operations from them."""

from __future__ import annotations

import re

import httpx

from tests import browser


def rendered(url: str, tmp_path) -> str:
    return browser.rendered(url, tmp_path / "chromium")


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
