"""Pub/Sub's Publish call, one request per batch, on the channel a PublisherClient opened.

Why not ``PublisherClient.publish()``: profiled under load, its per-message path
(a proto-plus message, a future, flow control, an ordering-key sequencer and its
locks per message) cost more CPU than everything else in the bridge together, and
with ordering on it cancels every later batch of a key with "Batch cancelled
because prior ordered message ... has failed", hiding the real cause. The bridge
batches itself (telemetry.py): this module only sends a ``PublishRequest`` of raw
protobuf messages and returns the gRPC future. The channel is the client's own,
so credentials, endpoint and ``PUBSUB_EMULATOR_HOST`` behave exactly as the client's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from google.pubsub_v1.types import PublishRequest, PublishResponse, PubsubMessage

#: The raw protobuf classes (upb): building them costs a fraction of proto-plus.
PB_MESSAGE: Any = PubsubMessage.pb()
_PB_REQUEST: Any = PublishRequest.pb()
_PB_RESPONSE: Any = PublishResponse.pb()

#: gRPC codes that mean "this request can never succeed as it is" (bad message, bad
#: attribute): retrying the same bytes cannot help, sending the messages alone can.
REJECTED_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT})


class PublishFuture(Protocol):
    """What the forwarder needs from a call's future (a ``grpc.Future`` has it)."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...


#: Sends ``messages`` (``PB_MESSAGE`` instances) to ``topic``; returns the call's future.
Publish = Callable[[str, Sequence[Any]], PublishFuture]


def grpc_publish(client: Any, timeout: float) -> Publish:
    """A :data:`Publish` over ``client``'s (a ``pubsub_v1.PublisherClient``) gRPC channel."""
    channel: grpc.Channel = client._transport.grpc_channel
    call = channel.unary_unary(
        "/google.pubsub.v1.Publisher/Publish",
        request_serializer=_PB_REQUEST.SerializeToString,
        response_deserializer=_PB_RESPONSE.FromString,
    )

    def publish(topic: str, messages: Sequence[Any]) -> PublishFuture:
        request = _PB_REQUEST(topic=topic, messages=messages)
        # The routing header the generated client sends too (regional endpoints use it).
        metadata = (("x-goog-request-params", "topic=" + quote(topic, safe="")),)
        future: PublishFuture = call.future(request, timeout=timeout, metadata=metadata)
        return future

    return publish


def describe(error: BaseException) -> tuple[str, bool]:
    """(the real cause as one line, whether the request was rejected as invalid)."""
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        code = error.code()
        details = (error.details() or "").strip().splitlines()
        return f"{code.name}: {details[0][:300] if details else ''}", code in REJECTED_CODES
    return f"{type(error).__name__}: {str(error)[:300]}", False
