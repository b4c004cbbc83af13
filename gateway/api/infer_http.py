"""The REST infer handler's logic, shared by the FastAPI route and the raw ASGI fast path.

Reads only what routing needs from the request (model, version, hint headers, the JSON
header's ``parameters`` and first shape) and hands the body bytes to the service unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.hints import HINT_NAMES
from gateway.core.kserve import peek_infer_body
from gateway.errors import ModelNotFound, PayloadTooLarge
from gateway.service import InferCall, InferenceService, InferResult
from gateway.upstream.base import PASS_REQUEST_HEADERS

__all__ = ["check_infer_request", "infer_http"]


def check_infer_request(
    service: InferenceService, model: str, content_length: str | None, max_body_bytes: int
) -> None:
    """Refuse early, before reading the body: unknown model (404), declared size (413)."""
    if not service.serves(model):
        raise ModelNotFound(f"unknown model '{model}'")
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
            hints={k: v for k in HINT_NAMES if (v := headers.get(k)) is not None},
            parameters=facts.parameters,
            batch=facts.batch,
        )
    )
