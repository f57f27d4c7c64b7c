"""uvicorn's httptools protocol, writing each reply with one system call instead of two, and
closing connections that are too slow to send a request.

uvicorn writes a reply's status line and headers when the application sends
`http.response.start`, then its body on `http.response.body`: two `send()` calls, two TCP
segments on the wire, and often two wake-ups of the client.  Both messages are sent within
one step of the request's task, so buffering writes until the event loop's next turn joins
them into one write.  Together with the bare router (app.py) this took the event-loop thread
from 270–318 to 229–288 µs of CPU per small request (docs/benchmarks.md).

uvicorn closes a kept-alive connection after `timeout_keep_alive` idle seconds, but has no clock
on a new connection that sends nothing, nor on one that sends its headers a byte at a time: both
would hold a connection (and a file descriptor) for ever.  The protocol here closes the first after
the same idle timeout and answers the second with 408 when its headers are not complete within
the request timeout of its first byte.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Forwards to `transport`; the writes made in one event-loop turn go out as one."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def http_protocol(request_timeout_s: float) -> type[asyncio.Protocol] | str:
    """The protocol class for `uvicorn.Config(http=...)` (its `timeout_keep_alive` is the idle
    timeout): coalescing writes and timing out slow headers, when httptools is installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _headers_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
            # a connection that never sends a byte is idle: uvicorn's first data cancels this
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._stop_headers_timer()
            self._headers_timer = self.loop.call_later(request_timeout_s, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._stop_headers_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_headers_timer()
            super().connection_lost(exc)

        def _stop_headers_timer(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _headers_too_slow(self) -> None:
            self._headers_timer = None
            if not self.transport.is_closing():
                body = b'{"error": "request headers not received within the request timeout"}'
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: " + str(len(body)).encode() +
                                     b"\r\n\r\n" + body)
                self.transport.close()

    return GuardedHttpToolsProtocol
