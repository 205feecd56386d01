"""meshgate's one error hierarchy.

Raised anywhere (front ends, pipeline stages, pools, upstream clients); each front end maps
it to its protocol's status in exactly one place. It lives in ``backends`` because that is
the lowest layer that raises, and every layer above may import it.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error meshgate answers a client with."""

    http_status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(GatewayError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class PermissionDenied(GatewayError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class ModelNotFound(GatewayError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class PayloadTooLarge(GatewayError):
    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class RateLimited(GatewayError):
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class UpstreamProtocolError(GatewayError):
    """The upstream answered something that is not a valid response."""

    http_status = 502
    grpc_code = "UNAVAILABLE"
    before_answer = False  # True when not one byte of an answer came back (safe to retry elsewhere)


class NoHealthyEndpoint(GatewayError):
    """No endpoint of the backend could take the request (all down, refused or ejected)."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class UpstreamTimeout(GatewayError):
    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class InjectedFault(GatewayError):
    """An error answered on purpose by a route's fault injection (chaos drills)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"fault injected by policy (status {status})")
        self.http_status = status
        self.grpc_code = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                          404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 504: "DEADLINE_EXCEEDED"}.get(
                              status, "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT")


class Overloaded(GatewayError):
    """The backend's in-flight limit and wait queue are full: answered at once, with Retry-After."""

    http_status = 503
    grpc_code = "UNAVAILABLE"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
