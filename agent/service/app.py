"""The service's routes: thin shells over the queue, `agent.reporting.queries` and `executors.predict`.

Every route under `/v1` asks for an API key unless the server runs with `--no-auth` (loopback only). A user's
mistake is a 422 whose `detail` is the one line the CLI would print; an unknown study is a 404; asking a study
for what its state does not allow (stopping an ended one) is a 409.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import shutil
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.reporting.queries import study_charts, study_detail, study_row, trial_detail, trial_rows
from agent.reporting.views import StudyDetail, StudyRow
from agent.service.adapters import MAX_ROWS, AdapterCache
from agent.service.answers import JsonCache, warm_up
from agent.service.auth import check_key
from agent.service.config import ServiceConfig
from agent.service.events import Snapshots, StudyWatcher, state_of
from agent.service.queue import StudyQueue
from agent.service.submit import DATA_KEYS, inside, study_settings
from agent.service.timing import ServerTiming
from memory.errors import StoreError, UserError
from memory.service_jobs import ServiceJob
from memory.store import Store

STATIC = Path(__file__).parent / "static"
KEEPALIVE_S = 15.0


class UploadTooLarge(Exception):
    pass


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413: by its Content-Length at once, else while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise UploadTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except UploadTooLarge:
            if not started:
                await _too_large(self.limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    mb = limit / 1024 / 1024
    return JSONResponse({"detail": f"the upload is larger than the server's limit of {mb:g} MB"}, status_code=413)


def create_app(config: ServiceConfig, *, start_queue: bool = True) -> FastAPI:
    """The service over `config`'s database; with `start_queue`, studies run (tests of routes alone may not)."""
    Store(config.db).close()  # create and migrate once, before any request or study process opens it
    adapters = AdapterCache(config.adapters_loaded)
    # One connection for every request, serialised by the store's lock. Not one per thread: each `Store` opens the
    # file to check its header, and closing any descriptor of a file drops every POSIX lock this process holds on
    # it (SQLite's own included), so a second connection opened mid-read lets a study process write under a reader.
    shared = Store(config.db, create=False)
    queue = StudyQueue(config, shared)

    def store() -> Store:
        return shared

    cache = JsonCache(shared.service.change_count)
    snapshots = Snapshots()  # shared by every event stream

    def stamp(name: str) -> tuple[int | None, Any]:
        """The study's id and what its cached answers depend on: its trials and its queue row."""
        return cache.memo(("stamp", name), lambda: read_stamp(name))

    def read_stamp(name: str) -> tuple[int | None, Any]:
        try:
            study_id: int | None = store().get_study(name).id
        except StoreError:
            study_id = None
        job = store().service.job(name)
        fingerprint = store().service.trials_fingerprints(study_id).get(study_id) if study_id is not None else None
        return study_id, (fingerprint, job.model_dump_json() if job else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_queue:
            queue.start()
        warm_up()
        try:
            yield
        finally:
            if start_queue:
                await run_in_threadpool(queue.close)
            shared.close()

    # fastapi-offline: Swagger UI and ReDoc at /docs and /redoc from assets in the package, not a CDN.
    app = FastAPIOffline(
        title="Open-AutoGLM",
        summary="Submit, watch and use LoRA tuning studies.",
        version="1",
        lifespan=lifespan,
    )
    app.state.queue = queue
    app.state.adapters = adapters
    app.state.config = config

    def require_key(request: Request) -> None:
        if not config.auth:
            return
        header = request.headers.get("authorization", "")
        key = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not check_key(store(), key):
            raise HTTPException(
                401,
                "a valid API key is required: send `Authorization: Bearer KEY` "
                "(make one with `autoglm serve --create-key`)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        status = 404 if isinstance(exc, StoreError) and str(exc).startswith("no study") else 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    v1 = Depends(require_key)

    # ----------------------------------------------------------------- studies

    def job_json(job: ServiceJob | None, name: str, leaderboard: bool = True) -> dict[str, Any]:
        try:
            detail: StudyDetail | None = study_detail(store(), name)
        except StoreError:
            detail = None
        return summary(job, detail, name, leaderboard)

    @app.post("/v1/studies", status_code=202, dependencies=[v1])
    async def submit(request: Request) -> dict[str, Any]:
        """Submit a study: a study file's keys as JSON, or multipart with `settings` (JSON) and data files."""
        uploads: dict[str, Path] = {}
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form(max_files=len(DATA_KEYS), max_fields=10)
            try:
                body = _parse_json(str(form.get("settings") or "{}"))
                for key in DATA_KEYS:
                    sent = form.get(key)
                    if isinstance(sent, UploadFile):
                        uploads[key] = await run_in_threadpool(_save_upload, sent, config)
            finally:
                await form.close()
        else:
            body = _parse_json((await request.body()).decode("utf-8", errors="replace"))

        def taken(name: str) -> bool:
            return store().service.job(name) is not None or _exists(store(), name)

        try:
            name, options = await run_in_threadpool(study_settings, body, config, uploads, taken)
        except UserError:
            for path in uploads.values():  # a refused submission leaves nothing behind
                shutil.rmtree(path.parent, ignore_errors=True)
            raise
        job = await run_in_threadpool(queue.submit, name, options)
        return {"id": job.name, "state": job.state}

    @app.get("/v1/studies", dependencies=[v1])
    def list_studies() -> Response:
        """Every study in the database (submitted here or started from the CLI) and every queued submission."""
        jobs = cache.memo("jobs", store().service.list_jobs)
        current = (
            cache.memo("fingerprints", store().service.trials_fingerprints),
            tuple(j.model_dump_json() for j in jobs),
        )
        return cache.answer("list", current, lambda: study_list(jobs, current[0]))

    rows_cache: dict[int, tuple[Any, StudyRow]] = {}  # a study's row, kept while its trials are unchanged

    def study_list(jobs: list[ServiceJob], fingerprints: dict[int, Any]) -> list[dict[str, Any]]:
        by_name = {j.name: j for j in jobs}
        rows = []
        for study in store().list_studies():
            cached = rows_cache.get(study.id)
            if cached is None or cached[0] != fingerprints.get(study.id):
                cached = (fingerprints.get(study.id), study_row(store(), study))
                rows_cache[study.id] = cached
            row = cached[1]
            job = by_name.pop(row.name, None)
            rows.append(
                {
                    **row.model_dump(mode="json"),
                    "id": row.name,
                    "study_id": row.id,
                    "state": state_of(job, study),
                    "spent": study.spent.model_dump(),
                    "limits": study.task.budget.model_dump(),
                    "error": job.error if job else None,
                }
            )
        for job in by_name.values():  # submitted, not begun (or failed before its study began)
            rows.append(summary(job, None, job.name))
        return rows

    @app.get("/v1/studies/{study}", dependencies=[v1])
    def show(study: str, leaderboard: bool = True) -> Response:
        """A study: state, task spec, budget spent, best trial and its test score, the floor, the leaderboard.

        `leaderboard=false` leaves the leaderboard out (the web page reads the trials from `/trials`).
        """
        study_id, current = stamp(study)
        job = store().service.job(study)
        if job is None and study_id is None:
            raise StoreError(f"no study {study!r}")
        return cache.answer(("show", study, leaderboard), current, lambda: job_json(job, study, leaderboard))

    @app.get("/v1/studies/{study}/trials", dependencies=[v1])
    def trials(study: str, after: int = Query(-1, ge=-1)) -> Response:
        """The trials numbered above `after`; ask again with `after=settled` for only what is new or changing."""
        study_id, current = stamp(study)
        if study_id is None:
            if store().service.job(study) is None:
                raise StoreError(f"no study {study!r}")
            empty: dict[str, Any] = {"study": study, "metric": None, "direction": None, "settled": -1, "trials": []}
            return cache.answer(("trials", study, after), current, lambda: empty)
        return cache.answer(("trials", study, after), current, lambda: trial_rows(store(), study_id, after))

    @app.get("/v1/studies/{study}/trials/{number}", dependencies=[v1])
    def trial(study: str, number: int) -> dict[str, Any]:
        """One trial: its config, metrics, curves, events and failure."""
        try:
            return trial_detail(store(), study, number)
        except StoreError:
            raise
        except UserError as e:
            raise HTTPException(404, str(e)) from None

    @app.get("/v1/studies/{study}/charts", dependencies=[v1])
    def charts(study: str) -> Response:
        """What the report plots, as data: best so far, parameter importance, the top trials' loss curves."""
        study_id, current = stamp(study)
        if study_id is None:
            raise StoreError(f"no study {study!r}")
        return cache.answer(("charts", study), current, lambda: study_charts(store(), study_id))

    @app.get("/v1/studies/{study}/events", dependencies=[v1])
    async def events(study: str, request: Request) -> StreamingResponse:
        """Server-sent events, the same JSON as `autoglm tune --json` prints, ending with `done`."""
        watcher = StudyWatcher(store(), study, snapshots, cache.memo)
        first, ended = await run_in_threadpool(watcher.poll)  # an unknown study is a 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            batch, done, quiet, count = first, ended, 0.0, 0
            while True:
                for event in batch:
                    count += 1
                    yield f"id: {count}\nevent: {event['event']}\ndata: {json.dumps(event, default=str)}\n\n"
                if done or await request.is_disconnected():
                    return
                await asyncio.sleep(config.poll_s)
                quiet = 0.0 if batch else quiet + config.poll_s
                if quiet >= KEEPALIVE_S:  # a comment line keeps proxies from closing an idle stream
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                try:
                    batch, done = await run_in_threadpool(watcher.poll)
                except UserError as e:  # the response has begun: say it as an event, not a status
                    batch, done = [{"event": "error", "study": study, "detail": str(e)}], True

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/studies/{study}/stop", status_code=202, dependencies=[v1])
    def stop(study: str) -> dict[str, Any]:
        """Stop a study as Ctrl-C would: finished trials kept, the running one queued again for a resume."""
        job = _conflict(lambda: queue.stop(study))
        return {"id": job.name, "state": job.state}

    @app.post("/v1/studies/{study}/resume", status_code=202, dependencies=[v1])
    async def resume(study: str, request: Request) -> dict[str, Any]:
        """Queue a stopped or failed study again; `{"trials": N}` runs N more (a complete study too)."""
        raw = (await request.body()).decode("utf-8", errors="replace").strip()
        body = _parse_json(raw) if raw else {}
        more = body.get("trials") if isinstance(body, dict) else None
        if more is not None and (not isinstance(more, int) or isinstance(more, bool) or more < 1):
            raise UserError(f"trials = {more!r} is not allowed: run at least 1 more trial")
        job = await run_in_threadpool(_conflict, lambda: queue.resume(study, more))
        return {"id": job.name, "state": job.state}

    @app.get("/v1/studies/{study}/report", dependencies=[v1])
    def report(study: str, format: str = Query("html", pattern="^(html|md|markdown)$")) -> Response:  # noqa: A002
        """The study's written report, as HTML (plots inline) or Markdown; written when the study ends."""
        record = store().get_study(study)
        path = Path(record.run_dir) / ("report.html" if format == "html" else "report.md")
        if not path.is_file():
            raise HTTPException(404, f"study {record.name!r} has no report yet; it is written when the study ends")
        if format == "html":
            return HTMLResponse(path.read_text(encoding="utf-8"))
        return PlainTextResponse(path.read_text(encoding="utf-8"), media_type="text/markdown; charset=utf-8")

    @app.get("/v1/studies/{study}/adapter", dependencies=[v1])
    def adapter(study: str) -> Response:
        """The best adapter (`best_adapter/`: PEFT weights, tokenizer, autoglm.json) as a zip archive."""
        record = store().get_study(study)
        folder = Path(record.run_dir) / "best_adapter"
        if not folder.is_dir():
            raise HTTPException(404, f"study {record.name!r} has no best adapter yet; it is saved when the study ends")
        headers = {"Content-Disposition": f'attachment; filename="{record.name}-best_adapter.zip"'}
        return Response(_zip(folder), media_type="application/zip", headers=headers)

    @app.post("/v1/predict", dependencies=[v1])
    async def predict(request: Request) -> dict[str, Any]:
        """Predict with a study's best adapter (`study`) or an adapter folder under the data root (`adapter`)."""
        body = _parse_json((await request.body()).decode("utf-8", errors="replace"))
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise UserError('send {"study": ID or "adapter": FOLDER, "data": [input, ...]}')
        rows = body["data"]
        if len(rows) > MAX_ROWS:
            raise UserError(f"{len(rows)} inputs in one request; send at most {MAX_ROWS} per request")
        if body.get("study") is not None:
            record = store().get_study(str(body["study"]))
            folder = Path(record.run_dir) / "best_adapter"
            if not folder.is_dir():
                raise HTTPException(409, f"study {record.name!r} has no best adapter yet")
        elif isinstance(body.get("adapter"), str):
            folder = await run_in_threadpool(inside, config.data_root, body["adapter"], "adapter")
        else:
            raise UserError('name the model: "study": ID, or "adapter": a folder under the data root')
        predictions = await run_in_threadpool(adapters.predict, folder, rows)
        return {"predictions": predictions}

    # ----------------------------------------------------------------- the web page

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.add_middleware(ServerTiming)  # outermost: it times the rest
    return app


def summary(job: ServiceJob | None, detail: StudyDetail | None, name: str, leaderboard: bool = True) -> dict[str, Any]:
    """A study as the API shows it: its state and queue facts, and `study_detail` once the study has begun.

    `leaderboard=False` leaves the detail's leaderboard out.
    """
    return {
        "id": name,
        "state": state_of(job, None) if detail is None else _state(job, detail),
        "submitted": job is not None,
        "error": job.error if job else None,
        "queued_at": job.created_at if job else None,
        "started_at": job.started_at if job else None,
        "settings": job.settings if job else None,
        "detail": None
        if detail is None
        else detail.model_dump(mode="json", exclude=None if leaderboard else {"leaderboard"}),
    }


def _state(job: ServiceJob | None, detail: StudyDetail) -> str:
    if job is not None:
        return job.state
    return {"interrupted": "stopped"}.get(detail.status, detail.status)


def _exists(store: Store, name: str) -> bool:
    try:
        store.get_study(name)
    except StoreError:
        return False
    return True


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"the body is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


def _conflict(action: Callable[[], ServiceJob]) -> ServiceJob:
    """Run a queue request; a study in the wrong state for it is a 409, an unknown one a 404."""
    try:
        return action()
    except StoreError:
        raise
    except UserError as e:
        raise HTTPException(409, str(e)) from None


def _save_upload(sent: UploadFile, config: ServiceConfig) -> Path:
    """Keep an uploaded data file in the server's uploads folder, under a name nobody else picks."""
    name = Path(sent.filename or "data.csv").name or "data.csv"  # never a path from the client
    folder = config.uploads_dir / secrets.token_hex(8)
    folder.mkdir(parents=True, exist_ok=False)
    target = folder / name
    with target.open("wb") as out:
        for chunk in iter(lambda: sent.file.read(1 << 20), b""):
            out.write(chunk)
    return target


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
