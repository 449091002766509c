"""``/v1/jobs``: submit, list, read, cancel, retry and follow training jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import (
    SUBMIT_ERRORS,
    UNAUTHORIZED,
    CurrentOwner,
    SessionDep,
    SessionsDep,
    SettingsDep,
    SubmitRate,
)
from api.presenters.jobs import event_public, job_detail, job_public
from api.replies import json_reply
from api.schemas.common import JobId, Problem
from api.schemas.jobs import MAX_EVENT_ID, EventPage, JobCreate, JobDetail, JobPage
from jobs import fair_queue, service
from jobs.db import session_factory
from jobs.dispatch import NotDispatched, dispatch_committed, dispatch_new
from jobs.models import NAME_LENGTH, TERMINAL, JobEvent, JobStatus, utcnow
from jobs.states import IllegalTransition
from jobs.submission import check_devices, check_queue_room, check_storable, confined_spec
from leap_core.run_names import run_name

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=UNAUTHORIZED)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no such job for this key"}
}


def _not_found(job_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[SubmitRate],
    response_model=JobDetail,
    responses=SUBMIT_ERRORS
    | {
        200: {
            "model": JobDetail,
            "description": "the job an earlier request with this Idempotency-Key created",
        },
        422: {"description": "invalid spec"},
        503: {"model": Problem, "description": "stored, but the broker did not take it"},
    },
)
def submit(
    body: JobCreate,
    sessions: SessionsDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Store a queued job and hand its id to the workers. With ``Idempotency-Key``, a
    retried request returns the job the first one created (200) instead of a second job."""
    dumped = body.model_dump(mode="json")  # validated by FastAPI, dumped here once
    check_storable(dumped)
    check_devices(body.resources.devices, settings)
    spec = confined_spec(JobCreate.training_spec(dumped), settings)  # stored absolute
    with sessions() as session:
        if idempotency_key is None or not service.has_idempotent(session, owner, idempotency_key):
            check_queue_room(session, settings, owner, 1)
        try:
            created = service.create_job(
                session,
                owner,
                name=(body.name or run_name(body))[:NAME_LENGTH],
                spec=spec,
                tags=body.tags,
                priority=body.priority,
                idempotency_key=idempotency_key,
                body_hash=service.request_hash(dumped) if idempotency_key else None,
                # Stamped in the transaction that stores the job (one commit per
                # submission); the stamp is taken back if the broker refuses the message.
                dispatched_at=utcnow(),
                queue=settings.queue,
            )
        except service.IdempotencyConflict as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        job = created.job
        try:
            dispatch_new(session, settings, [job], created.created)
        except NotDispatched as error:  # the broker is down: stored, not yet sent
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"job {error.job_id} is stored but the broker did not take it; repeat the "
                f"request with the same Idempotency-Key to send it",
            ) from None
    return json_reply(
        job_detail(job, settings),
        status.HTTP_201_CREATED if created.created else status.HTTP_200_OK,
        {"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    tag: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    order: Annotated[
        Literal["newest", "queue"],
        Query(description="newest first, or (queued jobs only) the order they will start in"),
    ] = "newest",
) -> JobPage:
    """The caller's jobs, newest first; follow ``next_cursor`` for older ones. With
    ``order=queue``, the caller's queued jobs in the order they will start (one page)."""
    if order == "queue":
        if cursor is not None or status_ not in (None, JobStatus.queued):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "order=queue lists queued jobs in one page: it takes no cursor and no other status",
            )
        queued = service.queued_jobs(session, owner, tag)
        places = fair_queue.places(session, settings, settings.queue)
        queued.sort(key=lambda job: places[job.id].position if job.id in places else 1 << 30)
        return JobPage(
            items=[job_public(job, settings, places.get(job.id)) for job in queued[:limit]],
            next_cursor=None,
        )
    try:
        rows, next_cursor = service.list_jobs(session, owner, status_, tag, limit, cursor)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    places = {}  # read only when the page shows a queued job
    if any(job.status == JobStatus.queued for job in rows):
        places = fair_queue.places(session, settings, settings.queue)
    items = [job_public(job, settings, places.get(job.id)) for job in rows]
    return JobPage(items=items, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobDetail, responses=NOT_FOUND)
def get_job(
    job_id: JobId, sessions: SessionsDep, owner: CurrentOwner, settings: SettingsDep
) -> Response:
    """Status, timestamps, attempt, progress with ETA, latest metrics, MLflow run link."""
    with sessions() as session:
        try:
            job = service.get_job(session, owner, job_id)
        except service.JobNotFound:
            raise _not_found(job_id) from None
        place = None
        if job.status == JobStatus.queued:
            place = fair_queue.places(session, settings, job.queue).get(job.id)
    return json_reply(job_detail(job, settings, place))


@router.post(
    "/{job_id}/cancel", response_model=JobDetail, responses=NOT_FOUND | {409: {"model": Problem}}
)
def cancel(
    job_id: JobId, session: SessionDep, owner: CurrentOwner, settings: SettingsDep
) -> Response:
    """A queued job is cancelled at once; a running one becomes ``cancelling`` and its
    worker stops it between steps, keeping the last checkpoint."""
    try:
        job = service.cancel_job(session, owner, job_id)
    except service.JobNotFound:
        raise _not_found(job_id) from None
    except IllegalTransition as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return json_reply(job_detail(job, settings))


@router.post(
    "/{job_id}/retry", response_model=JobDetail, responses=NOT_FOUND | {409: {"model": Problem}}
)
def retry(
    job_id: JobId, session: SessionDep, owner: CurrentOwner, settings: SettingsDep
) -> Response:
    """A failed or cancelled job runs again as a new attempt, resuming from its last
    checkpoint."""
    try:
        job = service.retry_job(session, owner, job_id)
    except service.JobNotFound:
        raise _not_found(job_id) from None
    except IllegalTransition as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    dispatch_committed(session, settings, job)
    return json_reply(job_detail(job, settings))


@router.get(
    "/{job_id}/events",
    response_model=EventPage,
    responses=NOT_FOUND | {200: {"content": {"text/event-stream": {}}}},
)
def events(
    job_id: JobId,
    session: SessionDep,
    owner: CurrentOwner,
    settings: SettingsDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_EVENT_ID, description="last event id already read")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    follow: Annotated[
        bool, Query(description="stream server-sent events until the job finishes")
    ] = False,
) -> EventPage | StreamingResponse:
    """State changes and log lines in order; ``follow=true`` streams them live (SSE)."""
    try:
        job = service.get_job(session, owner, job_id)
    except service.JobNotFound:
        raise _not_found(job_id) from None
    if follow:
        # The stream reads with short sessions of its own; this one (and its pooled
        # connection) is let go now, not when the stream ends minutes later.
        session.close()
        return StreamingResponse(
            _stream(session_factory(settings.database_url), owner, job_id, after),
            media_type="text/event-stream",
        )
    rows = service.list_events(session, job, after, limit)
    return EventPage(
        items=[event_public(row) for row in rows], next_after=rows[-1].id if rows else after
    )


async def _stream(
    factory: Callable[[], Session], owner: str, job_id: str, after: int
) -> AsyncIterator[str]:
    def read(after: int) -> tuple[str, list[JobEvent]]:
        with factory() as session:
            job = service.get_job(session, owner, job_id)
            return job.status, service.list_events(session, job, after, 500)

    while True:
        job_status, rows = await run_in_threadpool(read, after)
        for row in rows:
            after = row.id
            data = event_public(row).model_dump_json()
            yield f"id: {row.id}\nevent: {row.kind}\ndata: {data}\n\n"
        if not rows and job_status in TERMINAL:
            yield f"event: end\ndata: {json.dumps({'status': job_status})}\n\n"
            return
        if not rows:
            yield ": keep-alive\n\n"
            await asyncio.sleep(1.0)
