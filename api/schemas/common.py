"""What every resource's routes share: ids in URLs and the error body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel

from jobs.models import ID_PATTERN

#: A job id in a URL: the service's own ids only, so anything else is a 422 before the
#: database sees it (a NUL byte in a query parameter is an error there, not a miss).
JobId = Annotated[str, Path(pattern=ID_PATTERN, description="a job's id (32 hex digits)")]
SweepId = Annotated[str, Path(pattern=ID_PATTERN, description="a sweep's id (32 hex digits)")]


class Problem(BaseModel):
    detail: str
