"""The FastAPI application of ``audiomoment serve``: the search page and its JSON API.

Routes (the OpenAPI schema is at ``/openapi.json``):

* ``GET /`` and ``/static/...``: the page, from the package's ``static/`` folder;
* ``GET /api/status``: the index (generation, size), the encoders, work in progress;
* ``GET /api/recordings``: the recordings, paginated; ``GET /api/recordings/{id}``: one;
* ``GET /api/search?q=``: a text query; ``GET /api/search/like``: more like a moment of the
  index; ``POST /api/search/clip``: an uploaded example clip; ``POST /api/search/embedding``:
  a joint-space vector. Each answers the record of ``audiomoment search ... --db INDEX
  --json`` (``query``, ``system``, ``ranking``, ``moments``) plus ``query_id`` (for the trace
  route), ``generation``, ``recordings`` (the moments' recordings) and ``seconds``;
* ``GET /api/recordings/{id}/trace``: one recording's trace, smoothed trace, posterior and
  moments for a query;
* ``GET /api/recordings/{id}/clip``: a moment as WAV bytes; ``GET /api/recordings/{id}/audio``:
  the recording as a seekable WAV stream (byte ranges) for the page's player.

Requests name recordings by their integer id in the index, never by path; the only files
opened are the index's own (read-only) and the indexed sources of recordings with audio.
Every request head and body is bounded (:class:`~audiomoment.server.config.Limits`); a
body that stops arriving is a 408; a request framed two ways (Content-Length and
Transfer-Encoding), with two Host headers or in a version other than HTTP/1 is refused; a
Host header other than a loopback name is refused when the server is bound to loopback;
errors are JSON ``{"detail": "<one line>"}`` with a 4xx status (invalid fields as
``field: what is wrong``, never the input repeated back, never a path of the server: 503s
say what is wrong and the server's log names the file).
"""


import logging
import math
import os
import tempfile
import time
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import numpy as np
from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from audiomoment.config import LocalizeConfig
from audiomoment.errors import InputError
from audiomoment.index.store import Recording, Snapshot
from audiomoment.server.audio import (
    AudioUnavailable,
    parse_range,
    read_clip,
    stream_bytes,
    stream_plan,
)
from audiomoment.server.config import ServerConfig
from audiomoment.server.state import (
    Activity,
    ClapQueryEncoder,
    IndexState,
    QueryEncoder,
    QueryStore,
    Unavailable,
    without_paths,
)

Ranking = Literal["calibrated", "report"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Headers sent with every response: no sniffing, nothing loaded from elsewhere, no framing.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
     b"script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
     b"frame-ancestors 'none'; form-action 'self'"),
]
#: Largest recording id (the index's ids are SQLite's 64-bit integers).
MAX_ID = 2**63 - 1
FEATURES_ONLY_NOTE = "indexed from features alone: there is no audio file to play"
NO_QUERY_NOTE = "unknown query_id (the server keeps the queries of recent searches): search again"
#: The fields of the example-clip form, each of which may be given once.
CLIP_FORM_FIELDS = ("file", "start", "end", "system", "top", "ranking")

log = logging.getLogger("audiomoment.server")


# ---------------------------------------------------------------------- schema


class ErrorBody(BaseModel):
    """Every error: one line naming the field (or the thing) at fault and what is wrong."""

    detail: str


class MomentOut(BaseModel):
    """One ranked moment, as ``audiomoment search --db --json`` prints it."""

    recording_id: int
    recording: str
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    score: float = Field(description="the ranking score")
    z: float = Field(description="calibrated score (standard deviations over the archive)")
    report_score: float = Field(description="the report's per-recording score")


class RecordingOut(BaseModel):
    """One recording of the index (no file path: requests carry the id)."""

    id: int
    name: str
    duration_s: float
    n_windows: int
    has_audio: bool
    audio_note: str | None = Field(None, description="why there is no player, when none")


class SearchOut(BaseModel):
    """The CLI's JSON record of one search, and what the page needs besides."""

    query: str
    system: int
    ranking: str
    moments: list[MomentOut]
    query_id: str = Field(description="names this query for the trace route")
    generation: str = Field(description="the index state searched")
    recordings: list[RecordingOut] = Field(description="the moments' recordings")
    seconds: float = Field(description="time the server spent")


class RecordingsPage(BaseModel):
    total: int
    offset: int
    limit: int
    generation: str
    items: list[RecordingOut]


class TraceMoment(BaseModel):
    start: float
    end: float
    report_score: float


class TraceOut(BaseModel):
    """One recording's curves for a query, one value per window (hop_s apart)."""

    recording: RecordingOut
    system: int
    hop_s: float
    threshold: float = Field(description="posterior threshold of the runs")
    trace: list[float | None]
    smoothed: list[float | None]
    posterior: list[float | None]
    moments: list[TraceMoment]
    fallback: bool = Field(description="the moments came from the peak-centred fallback")


class ActivityOut(BaseModel):
    label: str
    seconds: float


class LimitsOut(BaseModel):
    query_chars: int
    upload_bytes: int
    example_s: float
    top: int
    clip_s: float
    context_s: float
    page: int


class StatusOut(BaseModel):
    generation: str
    recordings: int
    hours: float
    with_audio: int
    system1: bool = Field(description="the index holds System 1's neutral embedding")
    encoders: dict[str, str]
    activity: list[ActivityOut]
    context_s: float
    limits: LimitsOut


class EmbeddingQuery(BaseModel):
    """A search by a joint-space query vector (the index's dimension)."""

    vector: list[float] = Field(min_length=1, max_length=8192)
    label: str | None = Field(None, max_length=200)
    system: int = Field(1, ge=1, le=2)
    top: int = Field(10, ge=1)
    ranking: Ranking = "calibrated"


# ---------------------------------------------------------------------- middleware


#: Answer header that makes the server close the connection after the answer (the rest of
#: the request, unread, cannot be told from a next request).
CLOSE = {"Connection": "close"}


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes", headers=CLOSE)


class _Stalled(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body stopped arriving (nothing for {seconds:g} s)",
                         headers=CLOSE)


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.split(":", 1)[0]


class Guard:
    """ASGI middleware: HTTP version, framing and Host checks, request body bound, a time
    limit on a body that stops arriving, security headers.

    max_body : largest request body (bytes). allowed_hosts : Host names answered ("*": any).
    body_idle_s : seconds the body may pause between two pieces before a 408 (None: no
    limit; once the answer has begun, reads are not timed). max_head : largest request
    line and header block (bytes, as sent; larger: a 431; the HTTP parser bounds only a
    head still arriving). Refusals of a request whose body is left unread ask the server
    to close the connection.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_body: int,
                 allowed_hosts: list[str], body_idle_s: float | None = None,
                 max_head: int | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.allowed = None if "*" in allowed_hosts else {h.lower() for h in allowed_hosts}
        self.body_idle_s = body_idle_s
        self.max_head = max_head

    @staticmethod
    def head_bytes(scope: Scope) -> int:
        """Size of the request line and headers as sent (``METHOD target HTTP/1.1`` and
        ``name: value`` lines with their line ends, the blank line)."""
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if scope.get("query_string"):
            target += 1
        line = len(str(scope.get("method", ""))) + 1 + target + len(" HTTP/1.1\r\n")
        return line + sum(len(k) + 2 + len(v) + 2 for k, v in scope.get("headers", [])) + 2

    async def _reply(self, send: Send, status: int, detail: str, close: bool = False) -> None:
        body = JSONResponse({"detail": detail}).body
        extra = [(b"connection", b"close")] if close else []
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                *extra, *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def framing_error(scope: Scope) -> str | None:
        """Why a request's version or framing is refused (None: it is not): HTTP/1.x only;
        one Host header; Content-Length digits only, and not with Transfer-Encoding (a
        request framed two ways is read differently by different servers)."""
        version = str(scope.get("http_version", "1.1"))
        if not version.startswith("1."):
            return f"HTTP/{version} is not supported: this server speaks HTTP/1.1"
        names = [k.lower() for k, _ in scope.get("headers", [])]
        if names.count(b"host") > 1:
            return "more than one Host header"
        if b"content-length" in names and b"transfer-encoding" in names:
            return "Content-Length together with Transfer-Encoding"
        lengths = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
        if len(lengths) > 1 or (lengths and not lengths[0].strip().isdigit()):
            return "invalid Content-Length"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        framing = self.framing_error(scope)
        if framing is not None:
            await self._reply(send, 400, framing, close=True)
            return
        if self.max_head is not None and self.head_bytes(scope) > self.max_head:
            await self._reply(send, 431, f"request line and headers longer than "
                              f"{self.max_head} bytes", close=True)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = _host_name(headers.get(b"host", b"").decode("latin-1"))
        if self.allowed is not None and host not in self.allowed:
            await self._reply(send, 400, "unexpected Host header: this server answers "
                              "requests addressed to 127.0.0.1 or localhost")
            return
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.max_body:
            await self._reply(send, 413, f"request body larger than {self.max_body} bytes",
                              close=True)
            return
        received = 0
        complete = False
        started = False

        async def counted() -> Message:
            nonlocal received, complete
            if complete or started or self.body_idle_s is None:
                message = await receive()
            else:
                try:
                    with anyio.fail_after(self.body_idle_s):
                        message = await receive()
                except TimeoutError:
                    if not started:
                        raise _Stalled(self.body_idle_s) from None
                    # an answer that began meanwhile (a stream that listens for the
                    # client's disconnect) is not cut: wait on without a timer
                    message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            else:
                complete = True
            return message

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, counted, secured)
        except (_TooLarge, _Stalled) as exc:
            if started:
                raise
            await self._reply(send, exc.status_code, exc.detail, close=True)


# ---------------------------------------------------------------------- helpers


def validation_message(errors: Sequence[Any], shown: int = 3) -> str:
    """One line for FastAPI's list of invalid fields: ``field: what is wrong`` for the first
    ``shown`` of them (the input itself is never repeated back)."""
    parts = []
    for error in errors[:shown]:
        loc = [str(p) for p in error.get("loc", ())]
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "")
            parts.append(f"body: invalid JSON ({reason})" if reason else "body: invalid JSON")
            continue
        field = ".".join(loc[1:]) or (loc[0] if loc else "request")
        msg = " ".join(str(error.get("msg", "invalid")).split())[:200]
        if "Expected UploadFile" in msg:  # a form field where a file was expected
            msg = "expected an uploaded file (a multipart part with a filename)"
        parts.append(f"{field}: {msg}")
    if len(errors) > shown:
        parts.append(f"and {len(errors) - shown} more")
    return "; ".join(parts) or "invalid request"


def recording_out(rec: Recording) -> dict[str, Any]:
    return {
        "id": rec.id, "name": rec.name, "duration_s": round(rec.duration_s, 4),
        "n_windows": rec.n_windows, "has_audio": rec.has_audio,
        "audio_note": None if rec.has_audio else FEATURES_ONLY_NOTE,
    }


def _finite_list(x: NDArray[np.floating], digits: int = 5) -> list[float | None]:
    arr = np.round(np.asarray(x, dtype=np.float64), digits)
    return [float(v) if math.isfinite(v) else None for v in arr.tolist()]


def upload_name(filename: str | None) -> str:
    """The display name of an uploaded file: its last path part, printable, at most 100
    characters (it names the query; it is never used as a path)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return name.strip()[:100] or "upload"


def _download_name(rec: Recording, start: float, end: float) -> str:
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                   for c in Path(rec.name).stem)[:80] or f"recording{rec.id}"
    return f"{stem}_{start:.1f}-{end:.1f}.wav"


def recording_trace(
    snapshot: Snapshot, rec: Recording, query: NDArray[np.floating], system: int,
    config: LocalizeConfig,
) -> dict[str, Any]:
    """One recording's trace of ``query`` as :func:`~audiomoment.index.search.search_archive`
    computes it (same scoring, same localisation)."""
    from audiomoment.index.scan import window_scores
    from audiomoment.index.search import query_matrix
    from audiomoment.method.localize import localize_traces

    vectors = query_matrix(snapshot, np.asarray(query)[None, :], system)
    one = Snapshot(snapshot.root, snapshot.spec, [rec],
                   {rec.segment: snapshot.segments[rec.segment]}, snapshot.vectors,
                   snapshot.generation)
    scores, _ = window_scores(one, vectors)
    trace = np.ascontiguousarray(scores[:, 0])
    hop = snapshot.spec.hop_s
    out: dict[str, Any] = {
        "recording": recording_out(rec), "system": system, "hop_s": hop,
        "threshold": config.threshold, "trace": _finite_list(trace),
    }
    if len(trace) < 2:  # too short to localise
        return {**out, "smoothed": out["trace"], "posterior": [None] * len(trace),
                "moments": [], "fallback": False}
    cfg = config.with_(hop_s=hop) if config.hop_s != hop else config
    result = localize_traces([trace], [rec.duration_s], cfg)[0]
    moments = [{"start": round(float(s), 4), "end": round(float(e), 4),
                "report_score": round(float(sc), 6)} for s, e, sc in result.windows.tolist()]
    return {**out, "smoothed": _finite_list(result.smoothed),
            "posterior": _finite_list(result.posterior, 4), "moments": moments,
            "fallback": bool(result.fallback)}


# ---------------------------------------------------------------------- the app


def create_app(config: ServerConfig, encoder: QueryEncoder | None = None) -> FastAPI:
    """The application for ``config``; ``encoder`` replaces MS-CLAP's query encoders (for
    programs that bring their own). Opens the index (read-only) at once."""
    from audiomoment.index.queries import moment_query
    from audiomoment.index.search import archive_record, search_archive
    from audiomoment.io.audio import audio_info

    limits = config.limits
    index = IndexState(config.db)
    index.snapshot()  # fail now for a folder that is no index
    activity = Activity()
    encoders: QueryEncoder = encoder or ClapQueryEncoder(config, activity)
    queries = QueryStore()
    localize = LocalizeConfig()
    static = Path(str(resources.files("audiomoment.server") / "static"))

    app = FastAPI(
        title="audiomoment search",
        summary="Search an audiomoment archive index: text, example clip or more like a moment.",
        version=_version(),
        docs_url=None, redoc_url=None,  # their pages load scripts from a CDN
        redirect_slashes=False,
        responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody},
                   422: {"model": ErrorBody}},
    )
    app.state.index = index
    app.state.encoder = encoders
    app.state.queries = queries
    app.state.activity = activity
    app.state.config = config

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": without_paths(str(exc))}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        log.warning("503: %s", exc.log)  # the server's log names the file; the answer not
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(AudioUnavailable)
    async def _no_audio(_: Request, exc: AudioUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    def snapshot() -> Snapshot:
        try:
            return index.snapshot()
        except InputError as exc:
            raise Unavailable(f"the index cannot be read: {without_paths(str(exc))}",
                              f"the index cannot be read: {exc}") from None

    def recording(snap: Snapshot, recording_id: int) -> Recording:
        try:
            return snap.recording(recording_id)
        except KeyError:
            raise HTTPException(404, f"no recording with id {recording_id} in the index") \
                from None

    def answer(snap: Snapshot, label: str, vector: NDArray[np.floating], system: int,
               top: int, ranking: str, t0: float) -> dict[str, Any]:
        with activity.track(f"searching {len(snap)} recordings ({snap.hours:.1f} h)"):
            found = search_archive(snap, vector, system=system, top=top, config=localize,
                                   ranking=ranking)  # type: ignore[arg-type]
        record = archive_record(label, found)
        ids = dict.fromkeys(m.recording_id for m in found.moments)
        return {**record, "query_id": queries.put(vector), "generation": snap.generation,
                "recordings": [recording_out(snap.recording(i)) for i in ids],
                "seconds": round(time.perf_counter() - t0, 4)}

    errors = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 410: {"model": ErrorBody},
              503: {"model": ErrorBody}}

    # ------------------------------------------------------------------ page

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=static), name="static")

    # ------------------------------------------------------------------ index

    @app.get("/api/status", response_model=StatusOut, responses=errors)
    def status() -> dict[str, Any]:
        """The index searched, the query encoders and the work in progress."""
        snap = snapshot()
        return {
            "generation": snap.generation, "recordings": len(snap),
            "hours": round(snap.hours, 4),
            "with_audio": sum(r.has_audio for r in snap.recordings),
            "system1": snap.vector("neutral") is not None,
            "encoders": encoders.status(), "activity": activity.current(),
            "context_s": config.context_s,
            "limits": {"query_chars": limits.query_chars, "upload_bytes": limits.upload_bytes,
                       "example_s": limits.example_s, "top": limits.top,
                       "clip_s": limits.clip_s, "context_s": limits.context_s,
                       "page": limits.page},
        }

    @app.get("/api/recordings", response_model=RecordingsPage, responses=errors)
    def recordings(
        offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
        limit: Annotated[int, Query(ge=1, le=limits.page)] = 50,
    ) -> dict[str, Any]:
        """The index's recordings in id order, ``limit`` from ``offset``."""
        snap = snapshot()
        items = snap.recordings[offset : offset + limit]
        return {"total": len(snap), "offset": offset, "limit": limit,
                "generation": snap.generation, "items": [recording_out(r) for r in items]}

    id_path = Annotated[int, PathParam(ge=0, le=MAX_ID, description="a recording of the index")]

    @app.get("/api/recordings/{recording_id}", response_model=RecordingOut, responses=errors)
    def one_recording(recording_id: id_path) -> dict[str, Any]:
        """One recording by id."""
        return recording_out(recording(snapshot(), recording_id))

    # ------------------------------------------------------------------ search

    top_q = Annotated[int, Query(ge=1, le=limits.top, description="moments to return")]
    system_q = Annotated[int, Query(ge=1, le=2, description="1: background contrast; 2: none")]

    @app.get("/api/search", response_model=SearchOut, responses=errors)
    def search_text(
        q: Annotated[str, Query(min_length=1, max_length=limits.query_chars,
                                description="text query")],
        system: system_q = 1, top: top_q = 10, ranking: Ranking = "calibrated",
    ) -> dict[str, Any]:
        """The best moments of the archive for a text query."""
        t0 = time.perf_counter()
        snap = snapshot()
        if not q.strip():
            raise InputError("the query is empty")
        vector = encoders.text([q], snap.spec.checkpoint_sha256)[0]
        return answer(snap, q, vector, system, top, ranking, t0)

    @app.get("/api/search/like", response_model=SearchOut, responses=errors)
    def search_like(
        recording_id: Annotated[int, Query(ge=0, le=MAX_ID,
                                           description="a recording of the index")],
        start: Annotated[float | None, Query(ge=0, allow_inf_nan=False,
                                             description="seconds")] = None,
        end: Annotated[float | None, Query(gt=0, allow_inf_nan=False,
                                           description="seconds")] = None,
        system: system_q = 1, top: top_q = 10, ranking: Ranking = "calibrated",
    ) -> dict[str, Any]:
        """More like a moment of the index (the mean of its window embeddings)."""
        t0 = time.perf_counter()
        snap = snapshot()
        rec = recording(snap, recording_id)
        vector = moment_query(snap, rec.id, start, end)
        return answer(snap, f"like {recording_id}", vector, system, top, ranking, t0)

    async def each_field_once(request: Request) -> None:
        """Refuse a form that gives one of the clip form's fields more than once (the
        form is parsed once: FastAPI reads it again from the request's cache)."""
        form = await request.form()
        for name in CLIP_FORM_FIELDS:
            count = len(form.getlist(name))
            if count > 1:
                raise InputError(f"{name}: given {count} times; send it once")

    @app.post("/api/search/clip", response_model=SearchOut, responses=errors,
              dependencies=[Depends(each_field_once)])
    def search_clip(
        file: Annotated[UploadFile, File(description="an example clip (WAV, FLAC, ...)")],
        start: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
        end: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
        system: Annotated[int, Form(ge=1, le=2)] = 1,
        top: Annotated[int, Form(ge=1, le=limits.top)] = 10,
        ranking: Annotated[Ranking, Form()] = "calibrated",
    ) -> dict[str, Any]:
        """Search by example: an uploaded clip (kept in a temporary file while it is
        embedded, then deleted)."""
        t0 = time.perf_counter()
        snap = snapshot()
        name = upload_name(file.filename)
        suffix = Path(name).suffix.lower()
        from audiomoment.index.ingest import AUDIO_SUFFIXES

        fd, tmp = tempfile.mkstemp(prefix="audiomoment-upload-",
                                   suffix=suffix if suffix in AUDIO_SUFFIXES else ".audio")
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := file.file.read(1 << 20):
                    size += len(chunk)
                    if size > limits.upload_bytes:
                        raise HTTPException(413, f"the clip is larger than "
                                            f"{limits.upload_bytes} bytes")
                    out.write(chunk)
            if size == 0:
                raise InputError(f"{name}: the uploaded file is empty")
            try:
                info = audio_info(tmp)
            except InputError as exc:
                raise InputError(str(exc).replace(tmp, name)) from None
            if info.duration_s > limits.example_s:
                raise InputError(f"{name}: the clip is {info.duration_s:.1f} s long; examples "
                                 f"are limited to {limits.example_s:g} s")
            try:
                vector = encoders.clip(Path(tmp), start, end, snap.spec.checkpoint_sha256)
            except InputError as exc:
                raise InputError(str(exc).replace(tmp, name)) from None
        finally:
            os.unlink(tmp)
        return answer(snap, f"like {name}", vector, system, top, ranking, t0)

    @app.post("/api/search/embedding", response_model=SearchOut, responses=errors)
    def search_embedding(body: EmbeddingQuery) -> dict[str, Any]:
        """Search by a joint-space query vector (as ``--query-embedding``)."""
        t0 = time.perf_counter()
        snap = snapshot()
        if body.top > limits.top:
            raise InputError(f"top must be <= {limits.top}, got {body.top}")
        vector = np.asarray(body.vector, dtype=np.float64)
        if len(vector) != snap.spec.dim:
            raise InputError(f"vector: {len(vector)} values, the index holds "
                             f"{snap.spec.dim}-d embeddings")
        if not np.all(np.isfinite(vector)) or not np.any(vector):
            raise InputError("vector: must be finite and non-zero")
        vector = vector / np.max(np.abs(vector))  # in [-1, 1]: the norm cannot overflow
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        return answer(snap, body.label or "embedding", vector, body.system, body.top,
                      body.ranking, t0)

    # ------------------------------------------------------------------ one recording

    @app.get("/api/recordings/{recording_id}/trace", response_model=TraceOut, responses=errors)
    def trace(
        recording_id: id_path,
        query_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$",
                                              description="from a search's answer")] = None,
        q: Annotated[str | None, Query(min_length=1, max_length=limits.query_chars,
                                       description="or a text query")] = None,
        system: system_q = 1,
    ) -> dict[str, Any]:
        """A recording's trace, smoothed trace, posterior and moments for one query."""
        snap = snapshot()
        rec = recording(snap, recording_id)
        if (query_id is None) == (q is None):
            raise InputError("give query_id (from a search) or q (a text query)")
        if query_id is not None:
            vector = queries.get(query_id)
            if vector is None:
                raise HTTPException(404, NO_QUERY_NOTE)
        else:
            assert q is not None
            if not q.strip():
                raise InputError("the query is empty")
            vector = encoders.text([q], snap.spec.checkpoint_sha256)[0]
        return recording_trace(snap, rec, vector, system, localize)

    @app.get("/api/recordings/{recording_id}/clip", response_class=Response,
             responses={**errors, 200: {"content": {"audio/wav": {}},
                                        "description": "WAV bytes"}})
    def clip(
        recording_id: id_path,
        start: Annotated[float, Query(ge=0, allow_inf_nan=False, description="seconds")],
        end: Annotated[float, Query(gt=0, allow_inf_nan=False, description="seconds")],
        context: Annotated[float | None, Query(ge=0, le=limits.context_s,
                                               allow_inf_nan=False)] = None,
        channels: Literal["original", "mono"] = "original",
        download: bool = False,
    ) -> Response:
        """WAV bytes of ``[start - context, end + context]`` seconds of a recording, at its
        own rate (its own channels, or their mean)."""
        snap = snapshot()
        rec = recording(snap, recording_id)
        if end <= start:
            raise InputError(f"need start < end, got start {start}, end {end}")
        if end - start > limits.clip_s:
            raise InputError(f"clips are limited to {limits.clip_s:g} s, asked for "
                             f"{end - start:g} s")
        ctx = config.context_s if context is None else context
        try:
            cut = read_clip(rec, start, end, ctx, channels)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        headers = {"X-Clip-Start": f"{cut.start_s:.6f}", "X-Clip-End": f"{cut.end_s:.6f}"}
        if download:
            headers["Content-Disposition"] = (
                f'attachment; filename="{_download_name(rec, start, end)}"')
        return Response(cut.wav, media_type="audio/wav", headers=headers)

    @app.get("/api/recordings/{recording_id}/audio", response_class=Response,
             responses={**errors, 200: {"content": {"audio/wav": {}}},
                        206: {"content": {"audio/wav": {}}, "description": "a byte range"},
                        416: {"model": ErrorBody}})
    def audio(
        recording_id: id_path,
        range: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """The recording as 16-bit WAV at its own rate, with byte ranges (for players)."""
        snap = snapshot()
        rec = recording(snap, recording_id)
        plan = stream_plan(rec)
        size = plan.size
        wanted = parse_range(range, size)
        if wanted is False:
            return JSONResponse({"detail": "range not satisfiable"}, status_code=416,
                                headers={"Content-Range": f"bytes */{size}"})
        first, last = (0, size - 1) if wanted is None else wanted
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1),
                   "Cache-Control": "no-cache"}
        status_code = 200
        if wanted is not None:
            status_code = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(stream_bytes(rec, plan, first, last), status_code=status_code,
                                 media_type="audio/wav", headers=headers)

    app.add_middleware(Guard, max_body=limits.request_bytes,  # type: ignore[arg-type]
                       allowed_hosts=config.allowed_hosts(), body_idle_s=limits.body_idle_s,
                       max_head=limits.header_bytes)
    return app


def _version() -> str:
    from audiomoment import __version__

    return __version__
