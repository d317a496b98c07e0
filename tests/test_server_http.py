"""``audiomoment serve`` under malformed HTTP: raw bytes over a socket to the real server
(uvicorn with the options ``serve`` gives it, over the index of ``tests/test_server.py``).

Each malformed request must get a 4xx (JSON ``{"detail": "<one line>"}``) or a closed
connection where HTTP has nothing to answer, never a 5xx and never an error or traceback in
the server's log; a client that stops sending (an idle connection, headers or a body sent a
byte now and then, a body that never ends) must lose its connection; and a good request
must be answered after each case. The server's time limits are set short here (1.5 s) so
that the slow cases end quickly; the assertions are on what the server sends, never on how
long it took.
"""

from __future__ import annotations

import io
import json
import logging
import select
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from test_server import Archive, archive, server  # noqa: F401  (fixtures)

from audiomoment.index.store import ArchiveIndex, NewRecording
from audiomoment.server.config import Limits, ServerConfig
from audiomoment.server.http import BoundedH11Protocol, uvicorn_options

#: The short time limits of the server under test (seconds).
LIMITS = Limits(header_s=1.5, body_idle_s=1.5, keep_alive_s=1.0)
#: How long the client waits for the server before it calls the server hung (seconds).
PATIENCE = 30.0
HOST = b"Host: 127.0.0.1\r\n"
GOOD = b"GET /api/status HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"
EMBED = (b"POST /api/search/embedding HTTP/1.1\r\n" + HOST
         + b"Content-Type: application/json\r\n")


# ---------------------------------------------------------------------- raw client


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """What came back on one connection: the answers in order, and how it ended."""

    answers: list[Answer] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (EOF or reset)
    rest: bytes = b""  # bytes that are no whole answer

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.answers]


def parse_answers(data: bytes) -> tuple[list[Answer], bytes]:
    """Split HTTP/1.1 answers (Content-Length or chunked bodies; 1xx have none)."""
    answers = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        code = int(status)
        if code < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    return answers, data
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    return answers, data
                body, rest = body + rest[:size], rest[size + 2:]
                if size == 0:
                    break
        else:
            n = int(headers.get("content-length", "0"))
            if len(rest) < n:
                return answers, data
            body, rest = rest[:n], rest[n:]
        answers.append(Answer(code, headers, body))
        data = rest
    return answers, data


def exchange(port: int, *pieces: bytes, pause: float = 0.0, shut: bool = False,
             until_closed: bool = True, answered_first: bool = False) -> Exchange:
    """Send ``pieces`` (``pause`` seconds apart; after the first, only while the server has
    sent nothing, or, with ``answered_first``, once the first answer is whole), half-close
    when ``shut``, then read until the server closes the connection (or, without
    ``until_closed``, until it pauses)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        closed = False
        data = b""
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            if i and answered_first:
                while not parse_answers(data)[0]:
                    chunk = sock.recv(1 << 16)
                    assert chunk, f"closed before the first answer: {data[:200]!r}"
                    data += chunk
            elif i and select.select([sock], [], [], 0)[0]:
                break  # the server answered or closed: the rest would not be read
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if shut and not closed:
            sock.shutdown(socket.SHUT_WR)
        if not until_closed:
            sock.settimeout(2.0)
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError:
                if until_closed:
                    raise AssertionError(f"the server kept the connection open for "
                                         f"{PATIENCE:g} s; got {data[:200]!r}") from None
                break
            if not chunk:
                closed = True
                break
            data += chunk
    answers, rest = parse_answers(data)
    return Exchange(answers, closed, rest)


# ---------------------------------------------------------------------- the server


class LogRecords(logging.Handler):
    """Every log record of the server (uvicorn's loggers, asyncio's, the application's)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        """Records that report an error: level ERROR and above, or with a traceback."""
        out = []
        for r in self.records:
            text = r.getMessage()
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in text:
                out.append(f"{r.name} {r.levelname}: {text[:300]}")
        return out


@dataclass
class Served:
    port: int
    log: LogRecords


LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "audiomoment", "")


@contextmanager
def serving(config: ServerConfig) -> Iterator[Served]:
    """The application of ``config`` under uvicorn with ``serve``'s options in a thread, on
    a free loopback port."""
    from audiomoment.server.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    uv = uvicorn.Config(create_app(config), port=port, log_level="info",
                        **uvicorn_options(config))
    log = LogRecords()
    for name in LOGGERS:  # after uvicorn.Config has set its logging up
        logging.getLogger(name).addHandler(log)
    srv = uvicorn.Server(uv)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if srv.started:
                break
            time.sleep(0.05)
        assert srv.started, "the server did not start"
        yield Served(port, log)
    finally:
        srv.should_exit = True
        thread.join(30)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(log)


@pytest.fixture(scope="module")
def served(archive: Archive) -> Iterator[Served]:  # noqa: F811
    """The test index served with short time limits."""
    with serving(archive.config(limits=LIMITS)) as srv:
        yield srv


def refused(ex: Exchange, statuses: tuple[int, ...] = (400,), words: str = "",
            closed: bool = True) -> str:
    """The exchange is one JSON 4xx answer of ``statuses`` (detail containing ``words``),
    and the connection ended when ``closed``. Returns the detail."""
    assert len(ex.answers) == 1, (ex.statuses, ex.rest[:200])
    answer = ex.answers[0]
    assert answer.status in statuses and 400 <= answer.status < 500, (answer, statuses)
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"
    detail = json.loads(answer.body)["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    assert words in detail, (words, detail)
    if closed:
        assert ex.closed and answer.headers.get("connection", "").lower() == "close", ex
    return detail


@pytest.fixture
def after(served: Served) -> Iterator[Served]:
    """The server after the test: no error in its log, and a good request answered."""
    served.log.records.clear()
    yield served
    assert served.log.problems() == []
    ex = exchange(served.port, GOOD)
    assert ex.statuses == [200] and ex.closed, ex
    assert json.loads(ex.answers[0].body)["recordings"] == 4


# ---------------------------------------------------------------------- the cases

GARBLED = {
    "garbage request line": b"\x16\x03\x01\x02\x00 hello\r\n\r\n",
    "HTTP/0.9": b"GET /api/status\r\n\r\n",
    "header without colon": b"GET /api/status HTTP/1.1\r\n" + HOST + b"NoColon\r\n\r\n",
    "space before colon": b"GET /api/status HTTP/1.1\r\n" + HOST + b"X-A : 1\r\n\r\n",
    "NUL in the path": b"GET /api/\x00status HTTP/1.1\r\n" + HOST + b"\r\n",
    "non-ASCII in the path": "GET /api/stätus HTTP/1.1\r\n".encode() + HOST + b"\r\n",
    "NUL in a header": b"GET /api/status HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
    "no Host (HTTP/1.1)": b"GET /api/status HTTP/1.1\r\n\r\n",
    "two Host headers": b"GET /api/status HTTP/1.1\r\n" + HOST + HOST + b"\r\n",
    "negative Content-Length": EMBED + b"Content-Length: -5\r\n\r\n",
    "non-numeric Content-Length": EMBED + b"Content-Length: abc\r\n\r\n",
    "Content-Length with a sign": EMBED + b"Content-Length: +2\r\n\r\n{}",
    "two different Content-Lengths": EMBED + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "Content-Length of 30 digits": EMBED + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n{}",
    "chunk size not hex": EMBED + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    "negative chunk size": EMBED + b"Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
    "chunk size of 40 digits": EMBED + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40
                               + b"\r\n{}\r\n",
    "chunk without its CRLF": EMBED + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(GARBLED))
def test_garbled_requests_are_400(after: Served, name: str) -> None:
    refused(exchange(after.port, GARBLED[name]), (400,))


def test_http2_and_other_versions(after: Served) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert "HTTP/2.0 is not supported" in refused(exchange(after.port, preface))
    for version in (b"2.0", b"3.0"):
        ex = exchange(after.port, b"GET /api/status HTTP/" + version + b"\r\n" + HOST + b"\r\n")
        refused(ex, words=f"HTTP/{version.decode()} is not supported")
    # HTTP/1.0 is answered (with its Host header) and closed after the answer
    ex = exchange(after.port, b"GET /api/status HTTP/1.0\r\n" + HOST + b"\r\n")
    assert ex.statuses == [200] and ex.closed
    ex = exchange(after.port, b"GET /api/status HTTP/1.0\r\n\r\n")
    refused(ex, words="unexpected Host header", closed=False)


def test_unknown_method(after: Served) -> None:
    for method in (b"FOO", b"PROPFIND", b"CONNECT"):
        ex = exchange(after.port, method + b" /api/status HTTP/1.1\r\n" + HOST
                      + b"Connection: close\r\n\r\n")
        refused(ex, (404, 405), closed=False)
    ex = exchange(after.port, b"G(T /api/status HTTP/1.1\r\n" + HOST + b"\r\n")
    refused(ex)  # not a token


def test_oversized_request_line_and_headers_are_431(after: Served) -> None:
    over = LIMITS.header_bytes + 1024
    line = b"GET /api/status?" + b"a" * over + b" HTTP/1.1\r\n" + HOST + b"\r\n"
    words = f"longer than {LIMITS.header_bytes} bytes"
    refused(exchange(after.port, line), (431,), words)
    block = b"GET /api/status HTTP/1.1\r\n" + HOST + b"X-Big: " + b"b" * over + b"\r\n\r\n"
    refused(exchange(after.port, block), (431,), words)
    many = (b"GET /api/status HTTP/1.1\r\n" + HOST
            + b"".join(b"X-%d: v\r\n" % i for i in range(over // 8)) + b"\r\n")
    refused(exchange(after.port, many), (431,), words)
    # just under the bound is a request like any other
    fits = (b"GET /api/status HTTP/1.1\r\n" + HOST + b"X-Big: "
            + b"b" * (LIMITS.header_bytes - 200) + b"\r\nConnection: close\r\n\r\n")
    assert exchange(after.port, fits).statuses == [200]


def test_request_framed_two_ways_is_refused(after: Served) -> None:
    ex = exchange(after.port, EMBED + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\nGET /api/recordings HTTP/1.1\r\n" + HOST + b"\r\n")
    refused(ex, words="Content-Length together with Transfer-Encoding")
    for coding in (b"gzip, chunked", b"identity", b"chunked, chunked"):
        ex = exchange(after.port, EMBED + b"Transfer-Encoding: " + coding + b"\r\n\r\n"
                      b"0\r\n\r\n")
        refused(ex, words="Transfer-Encoding")
    ex = exchange(after.port, EMBED + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: "
                  b"chunked\r\n\r\n0\r\n\r\n")
    refused(ex, words="Transfer-Encoding")


def test_chunk_extensions_and_trailers_are_read_past(after: Served) -> None:
    """Chunk extensions and trailers carry nothing the server uses: the body is what the
    chunks hold (here ``{}``, a body without the vector: 422 naming it)."""
    for chunk in (b"2;\x01garbage=\"\r\n{}\r\n0\r\n\r\n", b"2;a=b;c\r\n{}\r\n0;x\r\n\r\n",
                  b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n"):
        ex = exchange(after.port, EMBED + b"Transfer-Encoding: chunked\r\nConnection: close"
                      b"\r\n\r\n" + chunk)
        refused(ex, (422,), words="vector", closed=False)
        assert ex.closed


def test_body_shorter_than_its_length_then_close(after: Served) -> None:
    """The client closes before the body it announced is complete: nothing to answer, the
    connection is closed, and the application sees a disconnect, not an error."""
    for head in (EMBED + b"Content-Length: 100\r\n\r\n", EMBED + b"Transfer-Encoding: "
                 b"chunked\r\n\r\n10\r\n{\"vec"):
        ex = exchange(after.port, head + b'{"vector":', shut=True)
        assert ex.closed and ex.answers == [] and ex.rest == b""


def test_clients_that_stop_sending_lose_the_connection(after: Served) -> None:
    port = after.port
    # connected, nothing sent: closed without an answer
    ex = exchange(port)
    assert ex.closed and ex.answers == [] and ex.rest == b""
    # part of the head, then nothing: 408
    ex = exchange(port, b"GET /api/status HTTP/1.1\r\nHost: 127.")
    refused(ex, (408,), "did not arrive within 1.5 s")
    # the head a few bytes at a time, each within the limit, the whole beyond it (slowloris)
    drip = [GOOD[i:i + 4] for i in range(0, 40, 4)]
    ex = exchange(port, *drip, pause=0.25)
    refused(ex, (408,), "did not arrive")
    # a body that never ends: 408 once it stops arriving
    ex = exchange(port, EMBED + b"Content-Length: 1000\r\n\r\n", b'{"vector": [', pause=0.2)
    refused(ex, (408,), "the request body stopped arriving")
    ex = exchange(port, EMBED + b"Transfer-Encoding: chunked\r\n\r\n3\r\n{\"v\r\n")
    refused(ex, (408,), "the request body stopped arriving")
    # 100-continue asked for, the body never sent
    ex = exchange(port, EMBED + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert ex.statuses == [100, 408] and ex.closed, ex
    # a body the route does not read: answered, then the rest never comes: closed
    ex = exchange(port, b"GET /api/status HTTP/1.1\r\n" + HOST + b"Content-Length: 50\r\n\r\n"
                  b"abc")
    assert ex.statuses[0] == 200 and ex.closed, ex
    # after an answer, a keep-alive connection left idle is closed
    ex = exchange(port, GOOD.replace(b"Connection: close\r\n", b""))
    assert ex.statuses == [200] and ex.closed


def test_malformed_body_after_the_answer_began(after: Served) -> None:
    """The route answered without reading the body; the body then turns out malformed: the
    connection is closed, without a second answer and without an error in the log."""
    head = b"GET /api/status HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n"
    ex = exchange(after.port, head, b"ZZ\r\nnot a chunk\r\n", answered_first=True)
    assert ex.statuses == [200] and ex.closed, ex


def test_body_dripping_after_the_answer_gets_no_second_answer(after: Served) -> None:
    """The route answered without reading the body, and the rest of the body then drips in
    (each byte within the keep-alive limit, the whole beyond the head's limit): the
    connection is closed after the one answer, never with a 408 written after it."""
    with socket.create_connection(("127.0.0.1", after.port), timeout=PATIENCE) as sock:
        sock.sendall(b"GET /api/status HTTP/1.1\r\n" + HOST + b"Content-Length: 50\r\n\r\n"
                     b"abc")
        data = b""
        while not parse_answers(data)[0]:
            chunk = sock.recv(1 << 16)
            assert chunk, data
            data += chunk
        for _ in range(round(4 * LIMITS.header_s / 0.3)):
            if select.select([sock], [], [], 0.3)[0]:
                break  # the server wrote or closed
            try:
                sock.sendall(b"d")
            except (BrokenPipeError, ConnectionResetError):
                break
        try:
            while chunk := sock.recv(1 << 16):
                data += chunk
        except ConnectionResetError:
            pass
    answers, rest = parse_answers(data)
    assert [a.status for a in answers] == [200] and rest == b"", (answers, rest[:200])


def test_pipelined_requests_are_answered_in_order(after: Served, archive: Archive) -> None:  # noqa: F811
    ids = archive.ids()
    features = ids["features/vid_0001"]
    requests = [b"GET /api/status HTTP/1.1\r\n" + HOST + b"\r\n",
                b"GET /api/recordings/%d HTTP/1.1\r\n" % features + HOST + b"\r\n",
                b"GET /api/recordings/999999 HTTP/1.1\r\n" + HOST + b"\r\n",
                b"GET /api/recordings/%d/audio HTTP/1.1\r\n" % features + HOST + b"\r\n",
                b"GET /api/recordings?limit=1 HTTP/1.1\r\n" + HOST + b"Connection: close\r\n\r\n"]
    ex = exchange(after.port, b"".join(requests))
    assert ex.statuses == [200, 200, 404, 409, 200] and ex.closed, ex
    assert json.loads(ex.answers[1].body)["name"] == "features/vid_0001"
    assert json.loads(ex.answers[4].body)["items"][0]["id"] == min(ids.values())
    # pipelined after a malformed one: the malformed one ends the connection
    ex = exchange(after.port, GOOD.replace(b"Connection: close\r\n", b"") + b"BAD\r\n\r\n"
                  + GOOD)
    assert ex.statuses == [200, 400] and ex.closed, ex


def test_request_split_byte_by_byte(after: Served) -> None:
    body = json.dumps({"vector": [1.0] * 1024, "top": 2}).encode()
    request = (EMBED + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: "
               b"close\r\n\r\n" + body)
    line = len(b"POST /api/search/embedding HTTP/1.1\r\n")  # byte by byte, then the rest
    ex = exchange(after.port, *[request[i:i + 1] for i in range(line)], request[line:])
    assert ex.statuses == [200] and ex.closed, ex
    assert len(json.loads(ex.answers[0].body)["moments"]) == 2
    line = GOOD.index(b"\r\n") + 2
    ex = exchange(after.port, *[GOOD[i:i + 1] for i in range(line)], GOOD[line:])
    assert ex.statuses == [200] and ex.closed


def test_percent_encoded_nul_and_bad_utf8_in_the_path(after: Served) -> None:
    for target, statuses in [(b"/api/recordings/%00", (422,)), (b"/api/recordings/%ff", (422,)),
                             (b"/static/..%2f..%2fapp.py", (404,)),
                             (b"/api/%00/status", (404,))]:
        ex = exchange(after.port, b"GET " + target + b" HTTP/1.1\r\n" + HOST
                      + b"Connection: close\r\n\r\n")
        refused(ex, statuses, closed=False)


def test_serve_runs_uvicorn_with_these_options(archive: Archive,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from audiomoment.cli.app import main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["serve", "--db", str(archive.db), "--port", "9"]) == 0
    kw = calls[-1]
    limits = Limits()
    assert issubclass(kw["http"], BoundedH11Protocol)
    assert (kw["http"].header_s, kw["http"].header_bytes) == (10.0, 16 * 1024)
    assert (kw["host"], kw["port"], kw["ws"]) == ("127.0.0.1", 9, "none")
    assert kw["server_header"] is False and kw["proxy_headers"] is False
    assert kw["timeout_keep_alive"] == limits.keep_alive_s == 5.0
    assert kw["h11_max_incomplete_event_size"] == limits.header_bytes
    assert kw["limit_concurrency"] == limits.connections == 64
    assert kw["timeout_graceful_shutdown"] > 0


def test_the_serve_command_refuses_malformed_framing(server: str) -> None:  # noqa: F811
    """The same through ``audiomoment serve`` itself (its default limits)."""
    port = int(server.rsplit(":", 1)[1])
    refused(exchange(port, GARBLED["garbage request line"]))
    refused(exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), words="HTTP/2.0")
    refused(exchange(port, EMBED + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n"), words="Content-Length together with Transfer-Encoding")
    big = b"GET /api/status HTTP/1.1\r\n" + HOST + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n"
    refused(exchange(port, big), (431,))
    assert exchange(port, GOOD).statuses == [200]



def test_audio_streams_whole_past_the_body_timer(archive: Archive,  # noqa: F811
                                                 tmp_path: Path) -> None:
    """A player's request that announces a body it never sends (``Content-Length: 10``):
    the audio answer does not read it, and while the answer streams for longer than
    ``body_idle_s`` (a client that reads nothing meanwhile, a recording larger than what the
    sockets hold) the body's timer must not cut it: the whole WAV arrives, and nothing is
    logged as an error."""
    sr, seconds = 48000, 60.0  # 11.5 MB of 16-bit stereo WAV
    source = tmp_path / "long.wav"
    signal = np.random.default_rng(3).uniform(-0.5, 0.5, (round(sr * seconds), 2))
    sf.write(source, signal, sr, subtype="PCM_16")
    db = tmp_path / "index.idx"
    shutil.copytree(archive.db, db)
    rows = np.random.default_rng(4).standard_normal((60, 1024))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    with ArchiveIndex(db).writer(archive.embedder.spec) as writer:
        writer.add([NewRecording(name="long.wav", embeddings=rows, duration_s=seconds,
                                 content_sha256="1" * 64, source=str(source),
                                 has_audio=True)])
    rec = {r.name: r.id for r in ArchiveIndex(db).snapshot().recordings}["long.wav"]
    get = b"GET /api/recordings/%d/audio HTTP/1.1\r\n" % rec + HOST
    with serving(archive.config(db=db, limits=LIMITS)) as srv:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
            sock.settimeout(PATIENCE)
            sock.connect(("127.0.0.1", srv.port))
            sock.sendall(get + b"Content-Length: 10\r\nConnection: close\r\n\r\n")
            time.sleep(2 * LIMITS.body_idle_s)  # the server waits on full sockets meanwhile
            data = b""
            while chunk := sock.recv(1 << 16):
                data += chunk
        answers, rest = parse_answers(data)
        assert [a.status for a in answers] == [200] and rest == b"", (len(data), rest[:100])
        wav = answers[0].body
        assert len(wav) == 44 + signal.size * 2 == int(answers[0].headers["content-length"])
        decoded, rate = sf.read(io.BytesIO(wav), dtype="int16")
        assert rate == sr
        assert np.array_equal(decoded, sf.read(source, dtype="int16")[0])
        assert srv.log.problems() == []
