"""How ``audiomoment serve`` runs uvicorn in front of the application.

* HTTP/1.1 through h11 always (the same parser whatever uvicorn extras are installed), no
  WebSocket, no ``Server`` header, no proxy headers trusted;
* the request line and headers are bounded (``Limits.header_bytes``: larger is a 431) and
  must arrive whole within ``Limits.header_s`` of the connection's start or of the previous
  answer, else the connection is closed (with a 408 when part of a request came): a client
  that opens connections and sends nothing, or a byte now and then, holds none for long.
  uvicorn's own keep-alive limit starts only after a first answer and is reset by any byte;
* a request body that pauses longer than ``Limits.body_idle_s`` is answered 408 by the
  application's guard (:class:`audiomoment.server.app.Guard`);
* malformed framing (h11's refusals) is answered with the application's JSON error shape
  (``{"detail": ...}``, its security headers, ``Connection: close``) and never echoes the
  request; where an answer has already begun, the connection is only closed;
* at most ``Limits.connections`` connections are served at once (uvicorn answers 503 over
  it), and a stop (Ctrl-C) waits at most a few seconds for answers in progress.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from audiomoment.server.config import Limits, ServerConfig

#: Seconds a stop waits for answers in progress (a player's stream can last an hour).
GRACEFUL_STOP_S = 5.0


def _security_headers() -> list[tuple[bytes, bytes]]:
    from audiomoment.server.app import SECURITY_HEADERS

    return list(SECURITY_HEADERS)


def error_response(detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a JSON error answer that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
               *_security_headers()]
    return headers, body


class _Connection(h11.Connection):
    """h11's server side, remembering the last protocol error it raised."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head and JSON refusals of
    malformed framing. ``header_s`` and ``header_bytes`` are set by :func:`protocol_class`."""

    header_s: float = Limits.header_s
    header_bytes: int = Limits.header_bytes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, self.header_bytes)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_after: Any = None

    # -------------------------------------------------------------- the head's deadline

    def _arm(self) -> None:
        """Start waiting for the next request's head (after ``self.cycle``)."""
        self._disarm()
        self._waiting_after = self.cycle
        self._deadline = self.loop.call_later(self.header_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.cycle is not self._waiting_after:
            return
        unread, _ = self.conn.trailing_data
        if (unread or self.conn.their_state is h11.SEND_BODY) and self.conn.our_state is h11.IDLE:
            # part of a request came and nothing was answered on this cycle (after an
            # answer, e.g. to a request whose body was not read, the connection is only
            # closed): say why the connection ends (h11 cannot frame an answer to a
            # request it has not read, so the bytes are written as they are)
            detail = f"the request did not arrive within {self.header_s:g} s"
            headers, body = error_response(detail)
            head = b"HTTP/1.1 408 Request Timeout\r\n" + b"".join(
                name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
            self.transport.write(head + body)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self._deadline is not None and self.cycle is not self._waiting_after:
            self._disarm()  # a new request's head arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None
                                                or self.cycle.response_complete):
            self._arm()

    # -------------------------------------------------------------- malformed framing

    def send_400_response(self, msg: str) -> None:
        """Refuse what h11 could not parse: a JSON 4xx when no answer has begun, then
        close (``msg`` is uvicorn's fixed text; the request is never echoed)."""
        error = getattr(self.conn, "error", None)
        hint = getattr(error, "error_status_hint", 400)
        if hint == 431:
            status, reason = 431, b"Request Header Fields Too Large"
            detail = f"request line and headers longer than {self.header_bytes} bytes"
        elif hint == 501:
            status, reason = 400, b"Bad Request"
            detail = "unsupported Transfer-Encoding (only chunked is accepted)"
        else:
            status, reason = 400, b"Bad Request"
            detail = "malformed HTTP request (request line, headers or body framing)"
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if answering:
            # the application is still at this request: it gets a disconnect, not the
            # bytes that follow, and its answer (if any) goes nowhere
            cycle.disconnected = True
            cycle.message_event.set()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not (
                answering and cycle.response_started):
            headers, body = error_response(detail)
            try:
                out = self.conn.send(h11.Response(status_code=status, headers=headers,
                                                  reason=reason))
                out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
                out += self.conn.send(h11.EndOfMessage()) or b""
                self.transport.write(out)
            except h11.LocalProtocolError:
                pass  # h11 cannot frame an answer now: closing says enough
        self.transport.close()


def protocol_class(limits: Limits) -> type[BoundedH11Protocol]:
    """:class:`BoundedH11Protocol` with ``limits``' head deadline and size."""
    return type("ServeH11Protocol", (BoundedH11Protocol,),
                {"header_s": limits.header_s, "header_bytes": limits.header_bytes})


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` for ``config`` (with the
    port and log level the caller's)."""
    limits = config.limits
    return {
        "host": config.host,
        "http": protocol_class(limits),
        "ws": "none",
        "server_header": False,
        "proxy_headers": False,
        "timeout_keep_alive": limits.keep_alive_s,
        "h11_max_incomplete_event_size": limits.header_bytes,
        "limit_concurrency": limits.connections,
        "timeout_graceful_shutdown": GRACEFUL_STOP_S,
    }
