"""The one way a request fails on purpose: a status code and a message for `{"error": ...}`."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server will not serve as sent.

    `status` is 4xx when the client can fix it (bad JSON, a wrong shape, an unknown version)
    and 503 when the server cannot serve yet (no version loaded).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


def not_found(message: str) -> RequestError:
    return RequestError(404, message)
