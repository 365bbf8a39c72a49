"""The ASGI application of ``inpaint serve`` (FastAPI): the page at ``/`` and the API at ``/api/v1``.

Routes (docs/serve.md has examples; ``/openapi.json`` the schema):

- ``GET /api/v1/models``: the methods offered, whether each can run here (and why not), the
  request fields each reads, the LoRA labels, the limits;
- ``POST /api/v1/complete``: complete one image and answer with the PNG (multipart: files
  ``image`` and ``mask`` and option fields) or with JSON (a JSON body with base64 images);
  the same request gives the bytes ``inpaint complete`` writes with the same options and seed;
- ``POST /api/v1/jobs``: the same request queued; answers 202 with the job, whose progress is
  ``GET /api/v1/jobs/{id}`` (polling) or ``GET /api/v1/jobs/{id}/events`` (server-sent events),
  whose result is ``GET /api/v1/jobs/{id}/result``, and ``DELETE /api/v1/jobs/{id}`` cancels;
- ``GET /api/v1/health``: the queue's lanes and the loaded methods.

Every error is JSON ``{"error": "one line"}`` with a 4xx status (5xx only for the server's own
failures: out of memory 503, a bug 500, its traceback in the server's log, never in the answer).
Inputs are read and checked before a job is queued, so a bad upload is answered at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from inpaint import __version__
from inpaint.errors import InputError
from inpaint.serve.jobs import DONE, FINISHED, Job, JobQueue, QueueFull
from inpaint.serve.models import WarmModels
from inpaint.serve.settings import (
    CALL_FIELDS,
    FLAG_FIELDS,
    REQUEST_FIELDS,
    CompletionRequest,
    ServerSettings,
    parse_request,
    request_options,
)
from inpaint.serve.uploads import REQUEST_BODY, ApiError, BodyLimit, BodyTooLarge, error_response, read_body

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: How often a waiting request or an event stream looks at its job (seconds).
_POLL = 0.05


def create_app(settings: ServerSettings | None = None, *, queue: JobQueue | None = None) -> FastAPI:
    """The application serving ``settings`` (defaults: every method, the server's defaults)."""
    settings = settings or ServerSettings()
    queue = queue or JobQueue(max_waiting=settings.max_waiting)
    warm = WarmModels()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        queue.close()  # Ctrl-C: waiting jobs are cancelled, a running one stops at its next step

    app = FastAPI(
        title="inpaint",
        version=__version__,
        description="Complete the masked part of an image with the methods this server offers.",
        lifespan=lifespan,
        # The interactive docs pages load their scripts from a CDN; this server works offline, so
        # it serves the schema alone (/openapi.json) and docs/serve.md documents the routes.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings, app.state.queue, app.state.warm = settings, queue, warm
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/v1/models", summary="The methods offered, their availability and request fields")
    async def list_models() -> dict:
        return await run_in_threadpool(_models_listing, settings)

    @app.get("/api/v1/health", summary="The queue per device and the loaded methods")
    async def health() -> dict:
        return {"status": "ok", "lanes": queue.stats(), "loaded": warm.names()}

    @app.post(
        "/api/v1/complete",
        summary="Complete one image and answer with the result (PNG, or JSON with base64 PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "application/json": {}}}},
        openapi_extra=REQUEST_BODY,
    )
    async def complete(request: Request) -> Response:
        job, as_json = await _submit(request, settings, queue, warm)
        try:
            while not job.finished.is_set():
                if await request.is_disconnected():  # the client gave up: free its place
                    queue.cancel(job)
                    return Response(status_code=499)
                await asyncio.sleep(_POLL)
            return _result_response(job, as_json=as_json)
        finally:
            if job.state in FINISHED:
                queue.forget(job)
            else:
                queue.cancel(job)

    @app.post(
        "/api/v1/jobs",
        status_code=202,
        summary="Queue a completion (same body as /api/v1/complete); answers with the job",
        openapi_extra=REQUEST_BODY,
    )
    async def submit_job(request: Request) -> JSONResponse:
        job, _ = await _submit(request, settings, queue, warm)
        return JSONResponse(queue.describe(job), status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    @app.get("/api/v1/jobs/{job_id}", summary="A job's state, queue position and progress")
    async def job_state(job_id: str) -> dict:
        return queue.describe(_job(queue, job_id))

    @app.get("/api/v1/jobs/{job_id}/events", summary="A job's state as server-sent events, until it finishes")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        job = _job(queue, job_id)

        async def events():
            seen = None
            while True:
                described = queue.describe(job)
                if described != seen:
                    seen = described
                    yield f"data: {json.dumps(described)}\n\n"
                if job.state in FINISHED or await request.is_disconnected():
                    return
                await asyncio.sleep(_POLL)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get(
        "/api/v1/jobs/{job_id}/result",
        summary="A finished job's result (PNG, full resolution)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def job_result(job_id: str) -> Response:
        return _result_response(_job(queue, job_id), as_json=False)

    @app.delete("/api/v1/jobs/{job_id}", summary="Cancel a job (waiting: dropped; running: stops at its next step)")
    async def cancel_job(job_id: str) -> dict:
        job = _job(queue, job_id)
        queue.cancel(job)
        return queue.describe(job)

    return app


# ---- requests -----------------------------------------------------------------------------------


async def _submit(request: Request, settings: ServerSettings, queue: JobQueue, warm: WarmModels) -> tuple[Job, bool]:
    """Read, check and queue a completion request; returns the job and whether it came as JSON."""
    from inpaint import models

    fields, image, mask, filename, as_json = await read_body(request)
    parsed = parse_request(fields, settings, filename=filename)
    info = models.get_method(parsed.model)
    options = request_options(parsed, settings)
    reason = await run_in_threadpool(info.why_unavailable, _local(options))
    if reason is not None:
        raise InputError(f"{parsed.model}: {reason.message}")
    pixels, holes, profile = await run_in_threadpool(_read_pair, image, mask, parsed)
    lane = await run_in_threadpool(_lane, info, options)

    def run(progress) -> bytes:
        from inpaint import completion, io

        if not warm.is_loaded(parsed.model, options):
            progress.phase(f"loading {parsed.model}")
        inpainter = warm.get(parsed.model, options)
        progress.phase("completing")
        completed = completion.complete_arrays(
            inpainter,
            pixels,
            holes,
            seed=parsed.seed,
            name=parsed.name,
            paste_back=parsed.paste_back,
            progress=progress,
        )
        return io.encode_image(completed.result, "PNG", icc_profile=profile)

    job = Job(model=parsed.model, seed=parsed.seed, name=parsed.name, run=run, lane=lane, ignored=parsed.ignored)
    try:
        queue.submit(job)
    except QueueFull as e:
        raise ApiError(503, str(e)) from None
    return job, as_json


def _read_pair(image: bytes, mask: bytes, request: CompletionRequest):
    """The image and mask as ``complete`` reads them; an empty mask is refused (nothing to do)."""
    from inpaint import io

    pair = io.read_pair(
        image,
        mask,
        image_name="image",
        mask_name="mask",
        invert_mask=request.invert_mask,
        resize_mask=request.resize_mask,
        keep_profile=True,
    )
    if not pair.mask.any():
        raise InputError("mask: empty (no white pixels), nothing to complete; white marks what to fill")
    return pair


def _local(options):
    """``options`` for availability: only weights already here count (a request never downloads)."""
    import dataclasses

    return dataclasses.replace(options, local_only=True)


def _lane(info, options) -> str:
    """The device a method runs on: classical methods on the CPU, diffusion ones on theirs."""
    if not info.heavy:
        return "cpu"
    from inpaint.devices import resolve_device

    return str(resolve_device(options.device))


def _job(queue: JobQueue, job_id: str) -> Job:
    job = queue.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)")
    return job


def _result_response(job: Job, *, as_json: bool) -> Response:
    if job.state != DONE:
        if job.error is not None:
            raise ApiError(job.status or 500, job.error)
        raise ApiError(409, f"job {job.id} is {job.state}; its result is not there")
    assert job.result is not None
    headers = {
        "X-Inpaint-Model": job.model,
        "X-Inpaint-Seed": str(job.seed),
        "X-Inpaint-Seconds": f"{job.seconds or 0.0:.3f}",
    }
    if job.ignored:
        headers["X-Inpaint-Ignored"] = ",".join(job.ignored)
    if as_json:
        return JSONResponse(
            {
                "image": base64.b64encode(job.result).decode("ascii"),
                "model": job.model,
                "seed": job.seed,
                "name": job.name,
                "seconds": round(job.seconds or 0.0, 3),
                "ignored": job.ignored,
            },
            headers=headers,
        )
    filename = f"{job.name}_{job.model}.png"
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    return Response(job.result, media_type="image/png", headers=headers)


# ---- the listing ----------------------------------------------------------------------------------


def _models_listing(settings: ServerSettings) -> dict[str, object]:
    from inpaint import io, models

    rows = []
    offered = settings.offered()
    for name in offered:
        info = models.get_method(name)
        reason = info.why_unavailable(_local(settings.load_options(name)))
        reads = info.reads if info.reads is not None else frozenset(CALL_FIELDS)
        rows.append(
            {
                "name": name,
                "summary": info.summary,
                "available": reason is None,
                "reason": None if reason is None else reason.message,
                "heavy": info.heavy,
                "options": [key for key in (*CALL_FIELDS, "lora") if key in reads],
                "loras": list(settings.loras) if "lora" in reads else [],
            }
        )
    return {
        "models": rows,
        "default": settings.default_method(),
        "fields": list(REQUEST_FIELDS),
        "flags": list(FLAG_FIELDS),
        "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": io.max_image_pixels()},
    }


# ---- errors and limits ----------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def apierror_response(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, {"Retry-After": "5"} if error.status == 503 else None)

    @app.exception_handler(InputError)
    async def inputerror_response(request: Request, error: InputError) -> JSONResponse:
        return error_response(422, str(error))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(error))

    @app.exception_handler(HTTPException)
    async def httperror_response(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else json.dumps(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path} (the API is under /api/v1)"
        return error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error(f"{request.method} {request.url.path}: unexpected {type(error).__name__}", exc_info=error)
        if isinstance(error, MemoryError):
            return error_response(503, "out of memory; try a smaller image")
        return error_response(500, f"unexpected {type(error).__name__}: {error}".splitlines()[0])
