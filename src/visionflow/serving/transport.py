"""uvicorn's httptools protocol, writing each reply with one system call instead of two.

uvicorn writes a reply's status line and headers when the application sends
`http.response.start`, then its body on `http.response.body`: two `send()` calls, two TCP
segments on the wire, and often two wake-ups of the client.  Both messages are sent within
one step of the request's task, so buffering writes until the event loop's next turn joins
them into one write.  Together with the bare router (app.py) this took the event-loop thread
from 270–318 to 229–288 µs of CPU per small request (docs/benchmarks.md).
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


def http_protocol() -> type[asyncio.Protocol] | str:
    """The protocol class for `uvicorn.Config(http=...)`: coalescing when httptools is installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    return CoalescingHttpToolsProtocol
