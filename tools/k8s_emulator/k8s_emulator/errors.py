"""API errors rendered as Kubernetes ``Status`` objects.

Clients branch on ``code`` and ``reason`` (kopf retries 409/429/5xx and treats 422 from a
JSON-patch ``test`` as "try again later"; kubectl prints ``message``; the Python client
raises ``ApiException`` with the body), so every failure must carry the real shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class ApiError(Exception):
    """An error that the HTTP layer renders as a ``Status`` with the given code."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def generic(cls, code: int, message: str | None = None, reason: str | None = None) -> ApiError:
        reason = reason or REASONS.get(code, "Unknown")
        return cls(code, reason, message or f"injected or generic error {code} ({reason})")

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def not_found(cls, group: str, plural: str, name: str) -> ApiError:
        what = f"{plural}.{group}" if group else plural
        return cls(
            404,
            "NotFound",
            f'{what} "{name}" not found',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def already_exists(cls, group: str, plural: str, name: str) -> ApiError:
        what = f"{plural}.{group}" if group else plural
        return cls(
            409,
            "AlreadyExists",
            f'{what} "{name}" already exists',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def conflict(cls, group: str, plural: str, name: str, why: str) -> ApiError:
        what = f"{plural}.{group}" if group else plural
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {what} "{name}": {why}',
            {"name": name, "group": group, "kind": plural},
        )

    @classmethod
    def invalid(
        cls, kind: str, group: str, name: str, causes: list[dict[str, str]]
    ) -> ApiError:
        what = f"{kind}.{group}" if group else kind
        # apierrors.NewInvalid: every cause is kept, but the message joins the causes
        # through field.ErrorList.ToAggregate, which drops repeated texts.
        texts = list(dict.fromkeys(
            f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
        ))
        summary = ", ".join(texts)
        if len(texts) > 1:
            summary = f"[{summary}]"
        return cls(
            422,
            "Invalid",
            f'{what} "{name}" is invalid: {summary}',
            {"name": name, "group": group, "kind": kind, "causes": causes},
        )

    @classmethod
    def unsupported_media_type(cls, accepted: list[str]) -> ApiError:
        """staging/src/k8s.io/apiserver/pkg/endpoints/handlers/negotiation/errors.go
        NewUnsupportedMediaTypeError (a PATCH whose content type the resource refuses)."""
        return cls(415, "UnsupportedMediaType",
                   "the body of the request was in an unknown format - accepted media types "
                   "include: " + ", ".join(accepted))

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)
