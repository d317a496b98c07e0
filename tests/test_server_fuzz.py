"""``audiomoment serve`` under hostile requests: every route of the JSON API is sent
generated and hand-made malformed input (query text, numbers, recording ids, times,
uploads, multipart bodies, JSON bodies, methods, headers), through FastAPI's TestClient or
straight through the ASGI interface where a client would clean the request up first.

Every answer must be a success or a 4xx JSON ``{"detail": "<one line>"}`` naming the field
at fault, never a 5xx, a traceback or a path of the server; a normal search must still work
afterwards. Property-based parts run a fixed number of derandomized examples.

The index is the one of ``tests/test_server.py`` (generated audio, the random-weight MS-CLAP
checkpoint and the real GPT-2 tokenizer, plus one recording from features alone).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import struct
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server import BASE, Archive, archive  # noqa: F401  (archive: fixture)

from audiomoment.index.store import ArchiveIndex, NewRecording
from audiomoment.server.config import Limits

#: Settings of every property-based test here: few examples, fixed, no example database.
FUZZ = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client(archive: Archive) -> Iterator[TestClient]:  # noqa: F811
    from audiomoment.server.app import create_app

    with TestClient(create_app(archive.config()), base_url=BASE,
                    raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def ids(archive: Archive) -> dict[str, int]:  # noqa: F811
    return archive.ids()


# ---------------------------------------------------------------------- checks

#: Text that must never appear in an answer: a Python traceback, the server's files.
LEAKS = ("Traceback", "File \"", "site-packages", "audiomoment/", ".py\"", "root:x:0")


def _server_paths(archive: Archive) -> list[str]:  # noqa: F811
    return [str(archive.root), str(archive.db), tempfile.gettempdir() + "/",
            str(Path(__file__).resolve().parents[1])]


class Checker:
    """The assertions every answer is held to (``paths``: the server's own folders)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def no_leak(self, body: bytes | str) -> None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        for leak in LEAKS:
            assert leak not in text, (leak, text[:300])
        for path in self.paths:
            assert path not in text, (path, text[:300])

    def error(self, status: int, headers: dict[str, str], body: bytes,
              fields: tuple[str, ...] = (), statuses: tuple[int, ...] = ()) -> str:
        """A 4xx JSON error with a one-line detail that names one of ``fields``."""
        assert 400 <= status < 500, (status, body[:300])
        if statuses:
            assert status in statuses, (status, statuses, body[:300])
        assert headers.get("content-type", "").startswith("application/json"), headers
        data = json.loads(body)
        assert set(data) == {"detail"}, data
        detail = data["detail"]
        assert isinstance(detail, str), detail
        assert detail and "\n" not in detail and "\r" not in detail, detail
        assert len(detail) <= 400, detail
        if fields:
            assert any(f in detail for f in fields), (fields, detail)
        self.no_leak(body)
        return detail

    def response(self, r: Any, fields: tuple[str, ...] = (),
                 statuses: tuple[int, ...] = ()) -> str:
        """An httpx answer that must be a 4xx error (see :meth:`error`)."""
        return self.error(r.status_code, dict(r.headers), r.content, fields, statuses)

    def any(self, r: Any) -> None:
        """An answer that may succeed or fail, but never with a 5xx."""
        assert r.status_code < 500, (r.status_code, r.text[:300])
        if r.status_code >= 400:
            self.response(r)
        elif r.headers.get("content-type", "").startswith("application/json"):
            self.no_leak(r.content)


@pytest.fixture(scope="module")
def check(archive: Archive) -> Checker:  # noqa: F811
    return Checker(_server_paths(archive))


def alive(c: TestClient) -> None:
    """The server still answers a normal search."""
    r = c.get("/api/search", params={"q": "a dog barks", "top": 3})
    assert r.status_code == 200, r.text
    assert r.json()["moments"]


def asgi(app: Any, method: str, target: bytes, headers: list[tuple[bytes, bytes]] | None = None,
         chunks: Iterator[bytes] | None = None) -> dict[str, Any]:
    """One request straight through the ASGI interface, exactly as written (no client-side
    encoding or normalisation): ``target`` is the raw path and query, ``chunks`` the body in
    pieces. Returns status, headers, body and ``received`` (body messages the app asked
    for)."""
    from urllib.parse import unquote_to_bytes

    import anyio

    path, _, query = target.partition(b"?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http",
             "path": unquote_to_bytes(path).decode("utf-8", "replace"), "raw_path": path,
             "query_string": query, "root_path": "",
             "headers": [*([] if any(k == b"host" for k, _ in headers or []) else
                           [(b"host", b"127.0.0.1")]), *(headers or [])],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    out: dict[str, Any] = {"body": b"", "received": 0, "headers": {}}
    pieces = iter(chunks or [])
    state = {"body_done": False}

    async def main() -> None:
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            if state["body_done"]:  # the client waits until the answer is complete
                await done.wait()
                return {"type": "http.disconnect"}
            out["received"] += 1
            piece = next(pieces, None)
            if piece is None:
                state["body_done"] = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": piece, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                                  for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    done.set()

        await app(scope, receive, send)

    anyio.run(main)
    return out


def wav_bytes(seconds: float, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    n = round(seconds * sr)
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(n) / sr)
    sf.write(buf, tone, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


# ---------------------------------------------------------------------- strategies

#: Unicode that stresses text handling: controls, NUL, RTL marks, combining marks, emoji.
HOSTILE_CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs",)),
    st.sampled_from(["\0", "\x01", "\x1b", "\x7f", "\u202e", "\u200f", "\u0301", "\u0336",
                     "\ufeff", "\U0001f600", "\u200d", "\ufffd", "\n", "\t", "%", "&", "=",
                     "#", "?", "/", "\\", "'", '"', "<"]),
)
HOSTILE_PIECES = st.one_of(
    HOSTILE_CHARS,
    st.sampled_from(["\U0001f468\u200d\U0001f469", "..", "%00", "%zz", "a\u0301\u0302",
                     "\u05e9\u05dc\u05d5\u05dd", "\u0645\u0631\u062d\u0628\u0627"]),
)
HOSTILE_TEXT = st.one_of(
    st.lists(HOSTILE_PIECES, max_size=40).map("".join),
    st.sampled_from(["", " ", "\t\n \r", "\0", "\0" * 50, "x" * 500, "x" * 501, "y" * 5000,
                     "\U0001f600" * 500, "\U0001f600" * 501, "\u0301" * 400,
                     "\u202eabc\u202c", "a\u0301\u0302\u0303" * 100, "../../etc/passwd",
                     "%2e%2e%2f", "%ff%fe", "\ud7ff"]),
)


def _int_like(value: Any) -> int | None:
    """The int a query value is read as, or None when it is not plainly an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


#: Values for integer parameters: negative, zero, huge, beyond int64, NaN, inf, fractions,
#: words; plus the valid range.
NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=120),
    st.sampled_from([0, -1, -(2**63), 2**63, 2**64 + 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e3", "1.5", "ten", "", " ", "0x10", "1,2",
                     "\0", "10; DROP TABLE", "\U0001f600"]),
)


def _param(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- text search


@FUZZ
@given(q=HOSTILE_TEXT, top=st.one_of(st.none(), NUMBERS),
       system=st.one_of(st.none(), st.sampled_from([1, 2, 0, 3, -1, "one", 1.0, 2.5])),
       ranking=st.one_of(st.none(), st.sampled_from(["calibrated", "report", "", "x", "\0"])))
def test_text_search_under_hostile_input(client: TestClient, check: Checker, q: str,
                                         top: Any, system: Any, ranking: Any) -> None:
    params: dict[str, str] = {"q": q}
    for name, value in (("top", top), ("system", system), ("ranking", ranking)):
        if value is not None:
            params[name] = _param(value)
    r = client.get("/api/search", params=params)
    top_ok = top is None or (_int_like(top) is not None and 1 <= top <= 100)
    system_ok = system in (None, 1, 2)
    ranking_ok = ranking in (None, "calibrated", "report")
    q_ok = 1 <= len(q) <= 500 and q.strip() != ""
    if q_ok and top_ok and system_ok and ranking_ok:
        assert r.status_code == 200, (params, r.text[:300])
        answer = r.json()
        assert answer["query"] == q
        assert 1 <= len(answer["moments"]) <= (10 if top is None else top)
        check.no_leak(json.dumps({k: v for k, v in answer.items() if k != "query"}))
        return
    if isinstance(top, float) and top.is_integer() and 1 <= top <= 100:
        check.any(r)  # "5.0" reads as 5: either answer is right
        return
    wrong = [name for name, ok in (("q", q_ok), ("top", top_ok), ("system", system_ok),
                                   ("ranking", ranking_ok)) if not ok]
    fields = tuple(wrong) + (("query",) if "q" in wrong else ())
    check.response(r, fields=fields, statuses=(422,))


def test_text_search_raw_query_strings(client: TestClient, check: Checker) -> None:
    """Query strings a client would not send: far too long, invalid percent-encoding,
    bytes that are not UTF-8, NUL and controls, repeated parameters. A request line longer
    than the head bound (16 KiB) is refused before the route reads it."""
    head = ("request line and headers longer than",)
    cases: list[tuple[bytes, tuple[int, ...], tuple[str, ...]]] = [
        (b"q=" + b"x" * 200_000, (431,), head),
        (b"q=" + b"%F0%9F%98%80" * 20_000, (431,), head),
        (b"q=" + b"x" * 12_000, (422,), ("q",)),
        (b"q=" + b"%F0%9F%98%80" * 1_000, (422,), ("q",)),
        (b"q=%zz%4", (200,), ()),
        (b"q=%ff%fe%fd", (200,), ()),
        (b"q=\xff\xfe\xc0\xaf", (200,), ()),
        (b"q=%00%00", (200,), ()),
        (b"q=%ed%a0%80", (200,), ()),  # an encoded lone surrogate
        (b"q=a%0d%0aSet-Cookie:%20x=1", (200,), ()),
        (b"q=", (422,), ("q",)),
        (b"q=%20%09%0a", (422,), ("q", "query")),
        (b"", (422,), ("q",)),
        (b"q", (422,), ("q",)),
        (b"q=a&q=b&q=" + b"c" * 600, (200, 422), ()),
        (b"q=a&top=5&top=-1", (200, 422), ()),
        (b"q=a&top=%00", (422,), ("top",)),
        (b"q=a&top=" + b"9" * 5000, (422,), ("top",)),
        (b"q=a&system=1e0", (422,), ("system",)),
        (b"&&&==&q=a", (200,), ()),
    ]
    for query, statuses, fields in cases:
        out = asgi(client.app, "GET", b"/api/search?" + query)
        assert out["status"] in statuses, (query[:60], out["status"], out["body"][:200])
        if out["status"] >= 400:
            check.error(out["status"], out["headers"], out["body"], fields)
        else:
            check.no_leak(json.dumps(json.loads(out["body"])["moments"]))
        assert b"Set-Cookie" not in b"".join(k.encode() for k in out["headers"])
    alive(client)


@FUZZ
@given(offset=st.one_of(st.none(), NUMBERS, st.sampled_from([2**31, 2**31 + 1])),
       limit=st.one_of(st.none(), NUMBERS, st.sampled_from([500, 501])))
def test_recordings_pages(client: TestClient, check: Checker, offset: Any, limit: Any) -> None:
    params = {name: _param(v) for name, v in (("offset", offset), ("limit", limit))
              if v is not None}
    r = client.get("/api/recordings", params=params)
    offset_ok = offset is None or (_int_like(offset) is not None and 0 <= offset <= 2**31)
    limit_ok = limit is None or (_int_like(limit) is not None and 1 <= limit <= 500)
    if offset_ok and limit_ok:
        assert r.status_code == 200, (params, r.text[:200])
        first = 0 if offset is None else offset
        count = 50 if limit is None else limit
        assert len(r.json()["items"]) == max(0, min(4 - first, count))
    elif any(isinstance(v, float) and v.is_integer() for v in (offset, limit)):
        check.any(r)
    else:
        fields = tuple(n for n, ok in (("offset", offset_ok), ("limit", limit_ok)) if not ok)
        check.response(r, fields=fields, statuses=(422,))


def test_host_headers(client: TestClient, check: Checker) -> None:
    for host in (b"", b"evil.example", b"127.0.0.1.evil.example", b"localhost.", b"[::1",
                 b"\xff\xfe", b"127.0.0.1 ", b"localhost@evil", b"0x7f000001", b"a" * 5000):
        out = asgi(client.app, "GET", b"/api/status", [(b"host", host)])
        if host in (b"127.0.0.1 ",):  # surrounding spaces are not part of the name
            assert out["status"] == 200
            continue
        check.error(out["status"], out["headers"], out["body"], ("Host",), (400,))
    # two Host headers, even both right: which one names the server is ambiguous
    out = asgi(client.app, "GET", b"/api/status", [(b"host", b"127.0.0.1")] * 2)
    detail = check.error(out["status"], out["headers"], out["body"], (), (400,))
    assert detail == "more than one Host header"


# ---------------------------------------------------------------------- recording ids

#: Recording ids that name nothing: beyond int64, negative, path-like, names, encoded.
BAD_IDS = ["-1", "0", "999999", str(2**63), str(2**64 + 5), "9" * 400, "-" + "9" * 30,
           "1.0", "1e3", "nan", "inf", "birds.wav", "sub%2Frain.wav", "%2e%2e%2f%2e%2e%2fetc",
           "..%2F..%2Fetc%2Fpasswd", "%252e%252e%252f", "%00", "%20", "+1", "0x1", "１",
           "%EF%BC%91", "%F0%9F%98%80"]


def test_recording_ids_that_name_nothing(client: TestClient, check: Checker,
                                         ids: dict[str, int]) -> None:
    existing = set(ids.values())
    for bad in BAD_IDS:
        raw = bad.encode() if bad.isascii() else quote(bad).encode()
        targets = [b"/api/recordings/" + raw, b"/api/recordings/" + raw + b"/clip?start=0&end=1",
                   b"/api/recordings/" + raw + b"/audio", b"/api/recordings/" + raw + b"/trace?q=x",
                   b"/api/search/like?recording_id=" + raw]
        for target in targets:
            out = asgi(client.app, "GET", target)
            try:
                as_int = int(float(bad)) if bad == "1.0" else int(bad)
            except ValueError:
                as_int = None
            if as_int is not None and as_int in existing:  # "+1", "1.0" read as id 1
                assert out["status"] < 500
                continue
            assert out["status"] != 200, (target, out["body"][:200])
            check.error(out["status"], out["headers"], out["body"],
                        fields=("recording", "Not Found"), statuses=(404, 422))
            if out["status"] == 422:
                assert "recording_id" in json.loads(out["body"])["detail"], (target, out)
    for path in ("/../../etc/passwd", "/etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
        out = asgi(client.app, "GET", b"/api/recordings" + path.encode())
        check.error(out["status"], out["headers"], out["body"], statuses=(404,))
    alive(client)


@FUZZ
@given(rec=st.one_of(st.integers(min_value=-(2**70), max_value=2**70),
                     st.text(HOSTILE_CHARS, min_size=1, max_size=20)))
def test_generated_recording_ids(client: TestClient, check: Checker, ids: dict[str, int],
                                 rec: int | str) -> None:
    for path in (f"/api/recordings/{quote(str(rec), safe='')}",
                 f"/api/recordings/{quote(str(rec), safe='')}/trace?q=rain"):
        r = client.get(path)
        if isinstance(rec, int) and rec in ids.values():
            assert r.status_code == 200
        elif isinstance(rec, int) and 0 <= rec < 2**63:
            assert check.response(r, statuses=(404,)) == (
                f"no recording with id {rec} in the index")
        elif isinstance(rec, int):  # negative, or beyond the index's 64-bit ids
            check.response(r, fields=("recording_id",), statuses=(422,))
        else:
            check.any(r)
    r = client.get("/api/search/like", params={"recording_id": str(rec)})
    if isinstance(rec, int) and rec not in ids.values():
        check.response(r, fields=("recording",), statuses=(404,) if 0 <= rec < 2**63 else (422,))
    else:
        check.any(r)


# ---------------------------------------------------------------------- times

TIMES = st.one_of(
    st.none(),
    st.floats(min_value=-1.0, max_value=30.0),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 11.99, 12.0, 12.5, 1e15, 1e300, 1.7e308,
                     math.nan, math.inf, -math.inf, -1e-9]),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "infinity", "", "x", "1,5", "0x1p3",
                     "1e999", "\0", "--1"]),
)


def _as_float(value: Any) -> float | None:
    if isinstance(value, float):
        return value
    return None


@FUZZ
@given(start=TIMES, end=TIMES, context=TIMES,
       channels=st.sampled_from([None, "original", "mono", "stereo", ""]))
def test_clip_times(client: TestClient, check: Checker, ids: dict[str, int], start: Any,
                    end: Any, context: Any, channels: str | None) -> None:
    rec = ids["birds.wav"]  # 12 s at 16 kHz
    params = {name: _param(v) for name, v in (("start", start), ("end", end),
                                               ("context", context), ("channels", channels))
              if v is not None}
    r = client.get(f"/api/recordings/{rec}/clip", params=params)
    s, e, c = _as_float(start), _as_float(end), _as_float(context)
    fields_ok = (s is not None and math.isfinite(s) and s >= 0
                 and e is not None and math.isfinite(e) and e > 0
                 and (context is None or (c is not None and math.isfinite(c) and 0 <= c <= 10))
                 and channels in (None, "original", "mono"))
    if not fields_ok:
        check.response(r, fields=("start", "end", "context", "channels"), statuses=(422,))
        return
    assert s is not None and e is not None
    ctx = 1.5 if c is None else c
    first = max(0, math.floor((s - ctx) * 16000 + 1e-9))
    stop = min(12 * 16000, math.ceil((e + ctx) * 16000 - 1e-9))
    if e <= s or e - s > 120 or stop <= first:
        check.response(r, fields=("start", "end", "clip", "outside"), statuses=(422,))
        return
    assert r.status_code == 200, (params, r.text[:200])
    assert len(sf.read(io.BytesIO(r.content))[0]) == stop - first


@FUZZ
@given(start=TIMES, end=TIMES)
def test_more_like_times(client: TestClient, check: Checker, ids: dict[str, int], start: Any,
                         end: Any) -> None:
    rec = ids["street.wav"]  # 10 windows
    params = {"recording_id": str(rec), "top": "3"}
    params |= {name: _param(v) for name, v in (("start", start), ("end", end))
               if v is not None}
    r = client.get("/api/search/like", params=params)
    s, e = _as_float(start), _as_float(end)
    if (start is not None and (s is None or not math.isfinite(s) or s < 0)) or (
            end is not None and (e is None or not math.isfinite(e) or e <= 0)):
        check.response(r, fields=("start", "end"), statuses=(422,))
        return
    lo = 0.0 if s is None else s
    hi = 10.0 if e is None else e
    if hi <= lo or math.floor(lo + 1e-9) >= min(10, math.ceil(hi - 1e-9)):
        check.response(r, fields=("start", "end", "outside"), statuses=(422,))
        return
    assert r.status_code == 200, (params, r.text[:200])


def test_trace_parameters(client: TestClient, check: Checker, ids: dict[str, int]) -> None:
    rec = ids["birds.wav"]
    url = f"/api/recordings/{rec}/trace"
    bad = [({}, ("query_id", "q")), ({"q": "x", "query_id": "0" * 24}, ("query_id", "q")),
           ({"q": ""}, ("q",)), ({"q": " \t"}, ("q", "query")), ({"q": "x" * 501}, ("q",)),
           ({"query_id": "../../etc/passwd"}, ("query_id",)),
           ({"query_id": "G" * 24}, ("query_id",)), ({"query_id": "0" * 25}, ("query_id",)),
           ({"q": "x", "system": "nan"}, ("system",)), ({"q": "x", "system": "3"}, ("system",))]
    for params, fields in bad:
        check.response(client.get(url, params=params), fields=fields, statuses=(422,))
    check.response(client.get(url, params={"query_id": "f" * 24}), fields=("search again",),
                   statuses=(404,))
    for q in ("\0", "\u202e\u0301" * 200, "\U0001f600" * 500):
        r = client.get(url, params={"q": q})
        assert r.status_code == 200 and len(r.json()["trace"]) == 12


# ---------------------------------------------------------------------- audio routes


def test_features_only_recording_has_no_clip_or_audio(client: TestClient, check: Checker,
                                                       ids: dict[str, int]) -> None:
    rec = ids["features/vid_0001"]
    for params in ({"start": 0, "end": 1}, {"start": 0, "end": 1, "channels": "mono",
                                             "download": "true"}, {"start": 19, "end": 20}):
        check.response(client.get(f"/api/recordings/{rec}/clip", params=params),
                       fields=("features alone",), statuses=(409,))
    for headers in ({}, {"Range": "bytes=0-10"}, {"Range": "bytes=-1"}, {"Range": "junk"}):
        check.response(client.get(f"/api/recordings/{rec}/audio", headers=headers),
                       fields=("features alone",), statuses=(409,))


@FUZZ
@given(header=st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.one_of(st.just(""), st.integers(-5, 2**70)),
              st.one_of(st.just(""), st.integers(-5, 2**70))),
    st.sampled_from(["bytes=0-0", "bytes=-0", "bytes=0-1,2-3", "bytes=99999999999999999999-",
                     "bytes=-99999999999999999999", "bytes=\u00b2-", "bytes=1-" + "9" * 150,
                     "x" * 201])))
def test_audio_range_headers(client: TestClient, check: Checker, ids: dict[str, int],
                             header: str) -> None:
    rec = ids["birds.wav"]
    size = 44 + 12 * 16000 * 2
    r = client.get(f"/api/recordings/{rec}/audio", headers={"Range": header.encode("latin-1")})
    if r.status_code == 416:
        assert r.headers["content-range"] == f"bytes */{size}"
        check.response(r)
    elif r.status_code == 422:
        assert len(header) > 200
        check.response(r, fields=("range",))
    elif r.status_code == 206:
        first, last = map(int, r.headers["content-range"].split()[1].split("/")[0].split("-"))
        assert 0 <= first <= last < size and len(r.content) == last - first + 1
    else:
        assert r.status_code == 200 and len(r.content) == size


# ---------------------------------------------------------------------- uploads

GOOD = wav_bytes(2.0)


def _huge_header(wav: bytes) -> bytes:
    """``wav`` with RIFF and data sizes claiming ~4 GiB."""
    return wav[:4] + struct.pack("<I", 0xFFFFFFF0) + wav[8:40] + struct.pack(
        "<I", 0xFFFFFFF0) + wav[44:]


def _wav_header(sr: int, channels: int, bits: int, data_bytes: int) -> bytes:
    """A PCM WAV header with any field values, valid or not."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, channels, sr, sr * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


def _float_wav(value: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full(32000, value, dtype=np.float32), 16000, format="WAV",
             subtype="FLOAT")
    return buf.getvalue()


UPLOADS: list[tuple[str, bytes, str]] = [
    ("no channels", _wav_header(16000, 0, 16, 100) + bytes(100), "decode"),
    ("rate zero", _wav_header(0, 1, 16, 100) + bytes(100), "decode"),
    ("zero bits", _wav_header(16000, 1, 0, 100) + bytes(100), "decode"),
    ("NaN samples", _float_wav(math.nan), "NaN"),
    ("infinite samples", _float_wav(math.inf), "infinite"),
    ("empty", b"", "empty"),
    ("one byte", b"R", "decode"),
    ("truncated header", GOOD[:20], "decode"),
    ("header only", GOOD[:44], "empty"),
    ("one sample", GOOD[:46], "shorter"),
    ("no frames", wav_bytes(0.0), "empty"),
    ("0.1 s", wav_bytes(0.1), "shorter"),
    ("RIFF only", b"RIFF\xff\xff\xff\xffWAVE", "decode"),
    ("fmt without data", GOOD[:36], "decode"),
    ("not audio", b"#!/bin/sh\nrm -rf /\n" * 100, "decode"),
    ("zip bytes", b"PK\x03\x04" + bytes(500), "decode"),
    ("NUL bytes", bytes(4096), "decode"),
]


@pytest.mark.parametrize("what,data,words", UPLOADS, ids=[u[0] for u in UPLOADS])
@pytest.mark.parametrize("name,ctype", [("clip.wav", "audio/wav"), ("a.flac", "audio/flac"),
                                        ("../../etc/x.mp3", "application/octet-stream")])
def test_uploads_that_are_not_usable_clips(client: TestClient, check: Checker, what: str,
                                           data: bytes, words: str, name: str,
                                           ctype: str) -> None:
    r = client.post("/api/search/clip", files={"file": (name, data, ctype)})
    shown = Path(name).name
    detail = check.response(r, fields=(shown,), statuses=(422,))
    assert words in detail, detail


def test_uploads_that_are_odd_but_usable(client: TestClient, check: Checker) -> None:
    # a header claiming ~4 GiB over 2 s of samples: the samples present are used
    for data, form in [(_huge_header(GOOD), {}), (GOOD, {"start": "1.5", "end": "1.6"}),
                       (wav_bytes(2.0, 8000, "FLOAT"), {"system": "2", "ranking": "report"}),
                       (GOOD + b"\0" * 1000, {}),
                       (_wav_header(2, 1, 16, 4) + b"\x10\x00" * 2, {}),  # 2 Hz, 1 s
                       (_wav_header(8000, 8, 16, 8 * 2 * 8000) + bytes(8 * 2 * 8000), {})]:
        r = client.post("/api/search/clip", files={"file": ("x.wav", data, "audio/wav")},
                        data=form)
        assert r.status_code == 200, r.text
        assert r.json()["query"] == "like x.wav"
    for name in ("\0\u202e.wav", "." * 300, "/", "C:\\Windows\\x.wav"):
        r = client.post("/api/search/clip", files={"file": (name, GOOD, "audio/wav")})
        assert r.status_code == 200, (name, r.text)
        shown = r.json()["query"][len("like "):]
        assert shown and "\0" not in shown and "/" not in shown and "\\" not in shown
        assert len(shown) <= 100
    # a part without a file name (a form sent with no file chosen) is no file
    r = client.post("/api/search/clip", files={"file": ("", GOOD, "audio/wav")})
    assert check.response(r, fields=("file",), statuses=(422,)) == (
        "file: expected an uploaded file (a multipart part with a filename)")


@FUZZ
@given(start=TIMES, end=TIMES, top=st.one_of(st.none(), NUMBERS),
       system=st.sampled_from([None, "1", "2", "0", "x"]))
def test_upload_form_fields(client: TestClient, check: Checker, start: Any, end: Any,
                            top: Any, system: str | None) -> None:
    form = {name: _param(v) for name, v in (("start", start), ("end", end), ("top", top),
                                            ("system", system)) if v is not None}
    r = client.post("/api/search/clip", files={"file": ("x.wav", GOOD, "audio/wav")},
                    data=form)
    s, e = _as_float(start), _as_float(end)
    starts_ok = start is None or (s is not None and math.isfinite(s) and s >= 0)
    ends_ok = end is None or (e is not None and math.isfinite(e) and e > 0)
    top_ok = top is None or (_int_like(top) is not None and 1 <= top <= 100)
    system_ok = system in (None, "1", "2")
    if not (starts_ok and ends_ok and top_ok and system_ok):
        if isinstance(top, float) and top.is_integer() and starts_ok and ends_ok and system_ok:
            check.any(r)
            return
        check.response(r, fields=("start", "end", "top", "system"), statuses=(422,))
        return
    lo, hi = (0.0 if s is None else s), (2.0 if e is None else e)
    if hi <= lo or math.floor(lo + 1e-9) >= min(2, math.ceil(hi - 1e-9)):
        check.response(r, fields=("start", "end", "x.wav"), statuses=(422,))
        return
    assert r.status_code == 200, (form, r.text[:300])


def test_multipart_bodies_that_are_wrong(client: TestClient, check: Checker) -> None:
    url = "/api/search/clip"
    wav = ("x.wav", GOOD, "audio/wav")
    check.response(client.post(url), fields=("file",), statuses=(422,))
    check.response(client.post(url, data={"top": "3"}), fields=("file",), statuses=(422,))
    check.response(client.post(url, files={"clip": wav}), fields=("file",), statuses=(422,))
    check.response(client.post(url, data={"file": "not a file"}), fields=("file",),
                   statuses=(422,))
    # a field given twice: refused, naming it (neither value is silently dropped)
    r = client.post(url, files=[("file", wav), ("file", ("y.wav", GOOD, "audio/wav"))])
    assert check.response(r, statuses=(422,)) == "file: given 2 times; send it once"
    r = client.post(url, files={"file": wav}, data={"file": "x"})
    assert check.response(r, statuses=(422,)) == "file: given 2 times; send it once"
    r = client.post(url, files={"file": wav}, data={"top": ["2", "3", "4"]})
    assert check.response(r, statuses=(422,)) == "top: given 3 times; send it once"
    for name in ("start", "end", "system", "ranking"):
        r = client.post(url, files={"file": wav}, data={name: ["1", "1"]})
        check.response(r, fields=(f"{name}: given 2 times",), statuses=(422,))
    r = client.post(url, files={"file": wav}, data={"other": ["1", "2"]})  # not a field
    assert r.status_code == 200
    for ctype, body in [("text/plain", b"hello"), ("application/json", b'{"file": "x"}'),
                        ("application/x-www-form-urlencoded", b"file=x.wav"),
                        ("multipart/form-data", b"--x\r\n"),  # no boundary
                        ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
                        ("multipart/form-data; boundary=x", b"garbage"),
                        ("multipart/form-data; boundary=" + "b" * 300, b"--x--"),
                        ("audio/wav", GOOD), ("", GOOD)]:
        r = client.post(url, content=body, headers={"content-type": ctype})
        check.response(r, fields=("file", "multipart", "body", "boundary"),
                       statuses=(400, 422))
    # many parts and an oversized text field: refused by the form parser's bounds
    boundary = "zz"
    many = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'
                    .encode() for i in range(1500)) + f"--{boundary}--\r\n".encode()
    r = client.post(url, content=many,
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    check.response(r, statuses=(400, 422))
    big_field = (f'--{boundary}\r\nContent-Disposition: form-data; name="top"\r\n\r\n'.encode()
                 + b"9" * (2 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode())
    r = client.post(url, content=big_field,
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    check.response(r, statuses=(400, 413, 422))
    alive(client)


def _multipart_stream(boundary: bytes, total: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """A multipart body of one file part whose content is ``total`` zero bytes, in pieces
    (one reused buffer, so the sender holds at most ``chunk`` bytes)."""
    yield (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
           b'filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n')
    block = bytes(chunk)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield block if n == chunk else block[:n]
        sent += n
    yield b"\r\n--" + boundary + b"--\r\n"


def test_upload_size_limit_is_enforced_while_streaming(archive: Archive,  # noqa: F811
                                                       check: Checker) -> None:
    """The upload bound holds before the body is read: a declared length above it is
    refused unread; a body without a length is refused once it passes the bound; a body
    under the request bound but over the clip bound is refused by the clip route. The
    server's memory stays far below the body's size throughout."""
    from audiomoment.server.app import create_app

    limits = Limits(upload_bytes=3 * 1024 * 1024, request_bytes=4 * 1024 * 1024)
    app = create_app(archive.config(limits=limits))
    ctype = (b"content-type", b"multipart/form-data; boundary=BND")
    # 1. declared too long: 413 without reading one body message
    out = asgi(app, "POST", b"/api/search/clip",
               [ctype, (b"content-length", str(50 * 1024 * 1024).encode())],
               _multipart_stream(b"BND", 50 * 1024 * 1024))
    check.error(out["status"], out["headers"], out["body"], ("larger",), (413,))
    assert out["received"] == 0
    for bad in (b"-1", b"1e9", b"12 34", b"0x10", b""):
        out = asgi(app, "POST", b"/api/search/clip", [ctype, (b"content-length", bad)])
        check.error(out["status"], out["headers"], out["body"], ("Content-Length",), (400,))
    # 2. no declared length, 100 MiB streamed: stopped just past the request bound
    tracemalloc.start()
    try:
        out = asgi(app, "POST", b"/api/search/clip", [ctype],
                   _multipart_stream(b"BND", 100 * 1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    check.error(out["status"], out["headers"], out["body"], ("larger",), (413,))
    assert out["received"] <= limits.request_bytes // (1 << 16) + 3
    assert peak < 3 * 1024 * 1024, peak  # the server never held the body
    # 3. under the request bound, over the clip bound: the clip route refuses it
    tracemalloc.start()
    try:
        out = asgi(app, "POST", b"/api/search/clip", [ctype],
                   _multipart_stream(b"BND", limits.upload_bytes + 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    detail = check.error(out["status"], out["headers"], out["body"], ("larger",), (413,))
    assert str(limits.upload_bytes) in detail
    assert peak < 3 * 1024 * 1024, peak
    # 4. exactly at the clip bound: read, then refused as audio
    out = asgi(app, "POST", b"/api/search/clip", [ctype],
               _multipart_stream(b"BND", limits.upload_bytes))
    check.error(out["status"], out["headers"], out["body"], ("big.wav",), (422,))
    with TestClient(app, base_url=BASE) as c:
        alive(c)


# ---------------------------------------------------------------------- JSON bodies


@FUZZ
@given(vector=st.one_of(
           st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
           st.builds(lambda x, n: [x] * n,
                     st.sampled_from([1.0, -1.0, 1e308, -1e308, 1e-320, 5e-324, 1e-30, 0.0,
                                      math.nan, math.inf, 3.0]),
                     st.sampled_from([1024, 1023, 1025, 0, 8193]))),
       top=st.one_of(st.none(), NUMBERS), label=st.one_of(st.none(), HOSTILE_TEXT))
def test_embedding_bodies(client: TestClient, check: Checker, vector: list[float], top: Any,
                          label: str | None) -> None:
    body: dict[str, Any] = {"vector": vector}
    if top is not None:
        body["top"] = top
    if label is not None:
        body["label"] = label
    r = client.post("/api/search/embedding", content=json.dumps(body, allow_nan=True),
                    headers={"content-type": "application/json"})
    arr = np.asarray(vector, dtype=np.float64)
    vector_ok = len(vector) == 1024 and bool(np.all(np.isfinite(arr))) and bool(np.any(arr))
    top_ok = top is None or (isinstance(top, int) and 1 <= top <= 100)
    label_ok = label is None or len(label) <= 200
    if vector_ok and top_ok and label_ok:
        assert r.status_code == 200, (vector[:3], top, r.text[:300])
        assert r.json()["moments"]
        return
    if isinstance(top, float) and top.is_integer() and 1 <= top <= 100 and vector_ok:
        check.any(r)
        return
    fields = tuple(n for n, ok in (("vector", vector_ok), ("top", top_ok), ("label", label_ok))
                   if not ok)
    check.response(r, fields=fields, statuses=(422,))


def test_embedding_of_extreme_magnitude_is_its_direction(client: TestClient) -> None:
    """A finite, non-zero vector is a direction whatever its scale: 1e300 times a vector and
    1e-300 times it search alike."""
    rng = np.random.default_rng(3)
    v = rng.standard_normal(1024)
    answers = []
    for scale in (1.0, 1e300, 1e-300):
        r = client.post("/api/search/embedding", json={"vector": (v * scale).tolist(),
                                                       "top": 5})
        assert r.status_code == 200, (scale, r.text)
        answers.append(r.json()["moments"])
    assert answers[0] == answers[1] == answers[2]
    one_hot = [0.0] * 1024
    one_hot[7] = 5e-324  # the smallest subnormal
    assert client.post("/api/search/embedding", json={"vector": one_hot}).status_code == 200


def test_json_bodies_that_are_wrong(client: TestClient, check: Checker) -> None:
    url = "/api/search/embedding"
    for body, ctype in [(b"", "application/json"), (b"{", "application/json"),
                        (b"\xff\xfe{}", "application/json"), (b"[1]" * 10, "application/json"),
                        (b"null", "application/json"), (b"[]", "application/json"),
                        (b'{"vector": "abc"}', "application/json"),
                        (b'{"vector": [' + b"1," * 1023 + b'"x"]}', "application/json"),
                        (b'{"vector": [' + b"1e999," * 1024 + b"0]}", "application/json"),
                        (b'{"vector": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
                         "application/json"),
                        (b'{"vector": [1], "system": 3}', "application/json"),
                        (b'{"vector": [NaN, Infinity]}', "application/json"),
                        (b'{"vector": [1]}', "text/plain"), (b"vector=1", "application/x-www-"
                                                             "form-urlencoded")]:
        r = client.post(url, content=body, headers={"content-type": ctype})
        check.response(r, fields=("vector", "body", "system", "JSON"), statuses=(400, 422))
    vec = json.dumps([1.0] * 1024).encode()
    r = client.post(url, content=b'{"vector": ' + vec + b', "vector": [0]}',
                    headers={"content-type": "application/json"})
    check.response(r, fields=("vector",), statuses=(422,))  # the last duplicate wins
    r = client.post(url, content=b'{"vector": ' + vec + b', "top": 1e400}',
                    headers={"content-type": "application/json"})
    check.response(r, fields=("top",), statuses=(422,))
    r = client.post(url, content=b'{"vector": ' + vec + b', "top": ' + b"9" * 5000 + b"}",
                    headers={"content-type": "application/json"})
    check.response(r, fields=("top", "body", "JSON"), statuses=(400, 422))
    alive(client)


# ---------------------------------------------------------------------- methods, routes

ROUTES = ["/", "/api/status", "/api/recordings", "/api/recordings/{id}",
          "/api/recordings/{id}/trace", "/api/recordings/{id}/clip",
          "/api/recordings/{id}/audio", "/api/search", "/api/search/like", "/api/search/clip",
          "/api/search/embedding", "/static/app.js"]
POSTS = {"/api/search/clip", "/api/search/embedding"}


def test_methods_not_allowed(client: TestClient, check: Checker, ids: dict[str, int]) -> None:
    for route in ROUTES:
        url = route.replace("{id}", str(ids["birds.wav"]))
        allowed = {"POST"} if route in POSTS else {"GET", "HEAD"}
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
                       "PROPFIND", "FOO"):
            if method in allowed:
                continue
            out = asgi(client.app, method, url.encode())
            check.error(out["status"], out["headers"], out["body"], ("Method",), (405,))
    for url in ("/api", "/api/", "/api/search/", "/api/unknown", "/static/", "/static/nope.js",
                "/static/../pyproject.toml", "/api/recordings/1/clip/extra", "/favicon.ico"):
        out = asgi(client.app, "GET", url.encode())
        check.error(out["status"], out["headers"], out["body"], ("Not Found",), (404,))
    alive(client)


# ---------------------------------------------------------------------- concurrency


def test_concurrent_requests_while_the_index_changes(archive: Archive,  # noqa: F811
                                                     check: Checker, tmp_path: Path) -> None:
    """Four threads search, list, trace and cut clips while a writer adds and removes
    recordings: no error, and each commit is seen by the next requests."""
    from audiomoment.server.app import create_app

    db = tmp_path / "live.idx"
    shutil.copytree(archive.db, db)
    app = create_app(archive.config(db))
    ids = {r.name: r.id for r in ArchiveIndex(db).snapshot().recordings}
    stop = threading.Event()
    problems: list[str] = []
    counts = [0] * 4
    rng = np.random.default_rng(11)

    def worker(k: int, requests: list[Callable[[TestClient], Any]]) -> None:
        try:
            while not stop.is_set():
                for make in requests:
                    r = make(c)
                    counts[k] += 1
                    if r.status_code >= 500 or (r.status_code >= 400 and r.status_code != 404):
                        problems.append(f"{r.request.url} -> {r.status_code} {r.text[:200]}")
                    elif r.status_code == 404:
                        check.response(r)
        except Exception as exc:  # reported by the main thread
            problems.append(f"{type(exc).__name__}: {exc}")

    birds, street = ids["birds.wav"], ids["street.wav"]
    jobs: list[list[Callable[[TestClient], Any]]] = [
        [lambda c: c.get("/api/search", params={"q": "a dog barks", "top": 20}),
         lambda c: c.get("/api/status")],
        [lambda c: c.get("/api/search/like", params={"recording_id": birds, "top": 50}),
         lambda c: c.get("/api/recordings", params={"limit": 500})],
        [lambda c: c.get(f"/api/recordings/{street}/trace", params={"q": "rain"}),
         lambda c: c.get(f"/api/recordings/{birds}/clip", params={"start": 1, "end": 2})],
        [lambda c: c.get(f"/api/recordings/{street}/audio", headers={"Range": "bytes=0-999"}),
         lambda c: c.post("/api/search/embedding",
                          json={"vector": [1.0] * 1024, "system": 2})],
    ]
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        threads = [threading.Thread(target=worker, args=(k, job)) for k, job in enumerate(jobs)]
        for t in threads:
            t.start()
        try:
            added: list[str] = []
            for step in range(6):
                rows = rng.standard_normal((15, 1024))
                rows /= np.linalg.norm(rows, axis=1, keepdims=True)
                name = f"live/{step}"
                with ArchiveIndex(db).writer() as writer:
                    writer.add([NewRecording(name=name, embeddings=rows, duration_s=15.0,
                                             content_sha256=f"{step:064d}", has_audio=False)])
                    if added and step % 2:
                        writer.remove([added.pop(0)])
                added.append(name)
                generation = ArchiveIndex(db).generation()
                status = c.get("/api/status").json()
                assert status["generation"] == generation
                names = {r["name"] for r in c.get("/api/recordings").json()["items"]}
                assert name in names and set(added) <= names
                new_id = next(r["id"] for r in c.get("/api/recordings").json()["items"]
                              if r["name"] == name)
                r = c.get("/api/search/like", params={"recording_id": new_id, "top": 100,
                                                      "system": 2})
                assert r.status_code == 200 and r.json()["generation"] == generation
                assert new_id in {m["recording_id"] for m in r.json()["moments"]}
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        assert problems == []
        assert min(counts) >= 2, counts
        alive(c)
