"""``/v1/sweeps``: submit a grid of training jobs as one sweep, follow it, read its table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response, status

from api.deps import (
    SUBMIT_ERRORS,
    UNAUTHORIZED,
    CurrentOwner,
    SessionDep,
    SettingsDep,
    SubmitRate,
)
from api.presenters.sweeps import sweep_detail, sweep_summary
from api.schemas.common import Problem, SweepId
from api.schemas.sweeps import SweepCreate, SweepDetail, SweepPage
from jobs import service, sweeps
from jobs.dispatch import NotDispatched, dispatch_new
from jobs.submission import check_storable
from jobs.sweep_plan import plan_cells

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=UNAUTHORIZED)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such sweep for this key"}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[SubmitRate],
    response_model=SweepDetail,
    responses=SUBMIT_ERRORS
    | {
        200: {
            "model": SweepDetail,
            "description": "the sweep an earlier request with this Idempotency-Key created",
        },
        422: {"description": "invalid sweep or cell"},
        503: {"model": Problem, "description": "stored, but the broker did not take every job"},
    },
)
def submit(
    body: SweepCreate,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> SweepDetail:
    """Expand the sweep into one job per cell (every cell validated first: one invalid cell
    is a 422 naming it, and nothing is stored or queued), store the sweep, its jobs and
    cells in one transaction, then hand the jobs to the workers as ``POST /v1/jobs`` does.
    With ``Idempotency-Key``, a retried request returns the first sweep (200)."""
    check_storable(body.model_dump())
    planned = plan_cells(body, settings, body.overrides)
    definition = body.model_dump(mode="json", exclude_unset=True)
    try:
        created = sweeps.create_sweep(
            session,
            owner,
            name=body.name,
            definition=definition,
            cells=planned,
            tags=body.tags,
            priority=body.priority,
            idempotency_key=idempotency_key,
            body_hash=service.request_hash(definition) if idempotency_key else None,
            settings=settings,
        )
    except service.IdempotencyConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    sweep = created.sweep
    try:
        dispatch_new(session, settings, created.jobs, created.created)
    except NotDispatched as error:  # the broker is down: stored, not all sent yet
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"sweep {sweep.id} is stored but the broker did not take job {error.job_id}; "
            f"repeat the request with the same Idempotency-Key to send the rest",
        ) from None
    if not created.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return sweep_detail(sweep, sweeps.cells_with_jobs(session, sweep))


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    owner: CurrentOwner,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> SweepPage:
    """The caller's sweeps, newest first, with their jobs' counts by state; follow
    ``next_cursor`` for older ones."""
    try:
        page, next_cursor = sweeps.list_sweeps(session, owner, limit, cursor)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return SweepPage(
        items=[sweep_summary(sweep, counts) for sweep, counts in page], next_cursor=next_cursor
    )


@router.get("/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def get_sweep(sweep_id: SweepId, session: SessionDep, owner: CurrentOwner) -> SweepDetail:
    """The cells with their job ids and states, counts by state, and the results table
    (per setting × method: metrics as mean ± std over seeds and the change against the
    matching baseline) of the cells that succeeded, labelled partial until all have."""
    try:
        sweep = sweeps.get_sweep(session, owner, sweep_id)
    except sweeps.SweepNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found") from None
    return sweep_detail(sweep, sweeps.cells_with_jobs(session, sweep))
