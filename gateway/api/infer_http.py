"""The REST infer handler's logic, shared by the FastAPI route and the raw ASGI fast path.

Reads only what routing needs from the request (model, version, hint headers, the JSON
header's ``parameters`` and first shape) and hands the body bytes to the service unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.hints import hint_items
from gateway.core.kserve import peek_infer_body
from gateway.errors import ModelNotFound, PayloadTooLarge, UnsupportedMediaType
from gateway.service import InferCall, InferenceService, InferResult
from gateway.upstream.base import PASS_REQUEST_HEADERS

__all__ = ["ACCEPTED_MEDIA_TYPES", "check_infer_request", "infer_http"]

ACCEPTED_MEDIA_TYPES = frozenset(
    {
        "application/json",
        "application/octet-stream",  # Triton's binary-tensor extension
        "application/x-www-form-urlencoded",  # curl -d's default: the body is JSON all the same
        "text/plain",
    }
)
"""``Content-Type`` media types an infer body may declare (none at all is fine too)."""


def check_infer_request(
    service: InferenceService,
    model: str,
    content_length: str | None,
    max_body_bytes: int,
    content_type: str | None = None,
) -> None:
    """Refuse early, before reading the body.

    Unknown model (404), declared size over the limit (413), a media type that is neither JSON
    nor a binary-tensor body (415).
    """
    if not service.serves(model):
        raise ModelNotFound(f"unknown model '{model}'")
    if content_type:
        media = content_type.partition(";")[0].strip().lower()
        if media and media not in ACCEPTED_MEDIA_TYPES:
            raise UnsupportedMediaType(
                f"unsupported Content-Type {media[:80]!r}: send application/json or "
                "application/octet-stream (binary tensors)"
            )
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > max_body_bytes:
        raise PayloadTooLarge(f"request body over the {max_body_bytes}-byte limit")


async def infer_http(
    service: InferenceService,
    model: str,
    version: str | None,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
) -> InferResult:
    """Route and forward one REST infer request.

    Args:
        service: the app's service.
        model: model name from the path.
        version: version from the path, or ``None``.
        target: the raw request path, forwarded as is.
        headers: request headers, lower-case names.
        body: the raw body.

    Raises:
        GatewayError: see :meth:`InferenceService.infer`; BadRequest for a malformed body.
    """
    facts = peek_infer_body(
        body, headers.get("inference-header-content-length"), headers.get("content-encoding")
    )
    return await service.infer(
        InferCall(
            model=model,
            version=version,
            target=target,
            body=body,
            headers={k: v for k in PASS_REQUEST_HEADERS if (v := headers.get(k)) is not None},
            hints=hint_items(headers),
            parameters=facts.parameters,
            batch=facts.batch,
        )
    )
