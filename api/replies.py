"""Replies serialised once, straight from the reply model.

A route that returns a pydantic model with a ``response_model`` has FastAPI validate the
model again (on the thread pool, for a plain ``def`` route) before it serialises it. The
job routes build their reply models from their own rows, so they hand FastAPI a finished
``Response`` instead: the same JSON (pydantic's serialiser, as FastAPI would use), the
``response_model`` kept on the route for the OpenAPI schema.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import to_json
from starlette.responses import Response


def json_reply(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        to_json(model), status_code=status_code, headers=headers, media_type="application/json"
    )
