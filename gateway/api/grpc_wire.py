"""Protobuf wire helpers for the gRPC front door: read what routing needs, never re-encode tensors.

The gateway forwards a ``ModelInferRequest`` to its worker as the exact bytes the client sent
and returns the worker's ``ModelInferResponse`` bytes unchanged. It only has to *read* a few
fields (model name and version, the inputs' names/shapes/datatypes, the ``parameters`` map), so
:func:`parse_infer_head` walks the top level of the message and hands every field **but**
``raw_input_contents`` (field 7) to the protobuf parser. Parsing a 4 MiB request whole costs
~750 µs (upb copies the tensor bytes); reading its head costs a few µs whatever the tensor size
(``tests/gateway/api/test_grpc_wire.py::test_head_parse_skips_tensor_bytes`` checks the skip).

Protobuf's merge rule (a field seen twice: scalars take the last value, repeated and map fields
concatenate) lets a message be extended by appending encoded fields, so the stream responses
(:func:`stream_infer_response`) and the routing parameters added to them
(:func:`append_parameters`) are built around the worker's bytes without decoding them.
"""

from __future__ import annotations

from collections.abc import Mapping

from tritonclient.grpc import service_pb2

from gateway.errors import BadRequest

__all__ = [
    "append_parameters",
    "encode_varint",
    "parse_infer_head",
    "stream_error",
    "stream_infer_response",
]

_RAW_INPUT_CONTENTS = 7
"""``ModelInferRequest.raw_input_contents`` field number (service.proto)."""

_HEAD_PARSE_DIRECT_BYTES = 4096
"""Below this size parsing the whole message (~2 µs) beats walking it in Python."""

_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative ``value``."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:]``; returns ``(value, next_pos)``.

    Raises:
        BadRequest: truncated or over-long varint.
    """
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end or shift > 63:
            raise BadRequest("malformed ModelInferRequest: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _strip_raw_contents(body: bytes) -> bytes:
    """``body`` without its top-level ``raw_input_contents`` fields (all other bytes kept)."""
    keep: list[bytes] = []
    pos = 0
    start = 0
    end = len(body)
    while pos < end:
        field_start = pos
        key, pos = _read_varint(body, pos)
        wire = key & 7
        if wire == _WIRE_VARINT:
            _, pos = _read_varint(body, pos)
        elif wire == _WIRE_I64:
            pos += 8
        elif wire == _WIRE_I32:
            pos += 4
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(body, pos)
            pos += length
            if (key >> 3) == _RAW_INPUT_CONTENTS:
                if field_start > start:
                    keep.append(body[start:field_start])
                start = pos
        else:
            raise BadRequest(f"malformed ModelInferRequest: unsupported wire type {wire}")
        if pos > end:
            raise BadRequest("malformed ModelInferRequest: field runs past the end of the message")
    if start == 0:
        return body
    keep.append(body[start:])
    return b"".join(keep)


def parse_infer_head(body: bytes) -> service_pb2.ModelInferRequest:
    """Decode a ``ModelInferRequest`` without its tensor bytes.

    Args:
        body: the serialized request exactly as the client sent it.

    Returns:
        The request with every field but ``raw_input_contents`` (which stays empty; forward
        ``body`` itself, not this message).

    Raises:
        BadRequest: ``body`` is not a valid ``ModelInferRequest``.
    """
    head = body if len(body) <= _HEAD_PARSE_DIRECT_BYTES else _strip_raw_contents(body)
    msg = service_pb2.ModelInferRequest()
    try:
        msg.ParseFromString(head)
    except Exception as exc:  # google.protobuf.message.DecodeError, kept import-free
        raise BadRequest(f"malformed ModelInferRequest: {exc}") from None
    return msg


def _len_field(number: int, payload: bytes) -> bytes:
    return encode_varint((number << 3) | _WIRE_LEN) + encode_varint(len(payload)) + payload


def stream_infer_response(infer_response: bytes) -> bytes:
    """A ``ModelStreamInferResponse`` carrying the serialized ``ModelInferResponse`` as is."""
    return _len_field(2, infer_response)


def stream_error(message: str, request_id: str = "") -> bytes:
    """A ``ModelStreamInferResponse`` with ``error_message`` set, as Triton sends one.

    Like Triton, the failed request's ``id`` (when it had one) comes back in
    ``infer_response.id`` so a client can tell which request of the stream failed.
    """
    out = _len_field(1, message.encode("utf-8"))
    if request_id:
        out += _len_field(2, _len_field(3, request_id.encode("utf-8")))  # ModelInferResponse.id
    return out


def append_parameters(message: bytes, params: Mapping[str, str | bool]) -> bytes:
    """Add ``parameters[k] = v`` (``string_param`` or ``bool_param``) to a ``ModelInferResponse``.

    ``parameters`` is field 4 of ``ModelInferResponse`` (a ``map<string, InferParameter>``);
    map entries appended to a message merge into its map, replacing an equal key.
    """
    parts = [message]
    for key, value in params.items():
        if isinstance(value, bool):
            param = b"\x08" + (b"\x01" if value else b"\x00")  # InferParameter.bool_param = 1
        else:
            param = _len_field(3, value.encode("utf-8"))  # InferParameter.string_param = 3
        entry = _len_field(1, key.encode("utf-8")) + _len_field(2, param)
        parts.append(_len_field(4, entry))
    return b"".join(parts)
