"""The GCP command service: validate, publish to Pub/Sub, and track executions.

The GCP counterpart of the AWS command broker and responses function, behind the
:class:`~iot_remote_access.core.command_backend.CommandBackend` interface:

- ``send``: the same checks as the broker (``core.commands.parse_send_request``: the
  catalogue, the caller among the command's senders as a Google principal, purpose,
  thing, arguments, reason, client token), then a ``pending`` record
  (``core.command_store``), then one message on the commands topic (ordering key and
  attribute ``thing``; the bridge relays it to ``cmd/{thing}/commands``).
- responses: pulled from the responses subscription the bridge publishes to. The thing
  is the message's ``thing`` attribute, which the bridge takes from the MQTT topic (the
  broker's ACL lets a device publish only its own), never from the payload. A response
  completes its record only under the rules of ``core.command_executions``
  (right thing, still pending, not expired, result valid); anything else is one
  ``refused`` audit record and changes nothing.
- ``sweep``: writes ``timed-out`` into pending records past their expiry.

Every send, refusal, response and timeout is one structured audit record on the
``iot_remote_access.audit`` logger (``{"audit": {...}}``, the broker's fields).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc

from iot_remote_access.core.argument_schema import SchemaError, validate
from iot_remote_access.core.command_backend import CommandBackendError
from iot_remote_access.core.command_executions import completion, execution_item, refusal_reason
from iot_remote_access.core.command_store import (
    ExecutionStore,
    checked_request,
    readable,
    readable_commands,
    refusal_fields,
    replayed,
    sent_fields,
    shown_record,
)
from iot_remote_access.core.commands import (
    CommandCatalogue,
    CommandMessage,
    CommandRuleError,
    SendRequest,
    audit_record,
    command_id_for,
    format_time,
    new_command,
    parse_response,
    validate_command_id,
    validate_thing,
)
from iot_remote_access.core.topics import THING_NAME_RULE

audit_log = logging.getLogger("iot_remote_access.audit")
log = logging.getLogger("iot_remote_access.pubsub.command_service")
#: How long a publish may take before the command counts as not sent.
PUBLISH_TIMEOUT_SECONDS = 30.0
#: Responses pulled per request (Pub/Sub allows up to 1,000).
PULL_BATCH = 100


@dataclass(frozen=True)
class PubsubNames:
    """Where commands go and responses come from (full resource paths)."""

    commands_topic: str
    responses_subscription: str

    @classmethod
    def of(cls, project: str, commands_topic: str, responses_subscription: str) -> PubsubNames:
        return cls(
            f"projects/{project}/topics/{commands_topic}",
            f"projects/{project}/subscriptions/{responses_subscription}",
        )


def _now() -> datetime:
    return datetime.now(UTC)


class GcpCommandService:
    """One caller's view of the command service (``requester``: a Google principal).

    ``publisher``/``subscriber``: ``google.cloud.pubsub_v1`` clients (the publisher with
    message ordering on); ``store``: the execution records.
    """

    def __init__(
        self,
        *,
        catalogue: CommandCatalogue,
        names: PubsubNames,
        publisher: Any,
        subscriber: Any,
        store: ExecutionStore,
        requester: str,
        thing_name_pattern: str = THING_NAME_RULE,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.catalogue = catalogue
        self.names = names
        self._publisher = publisher
        self._subscriber = subscriber
        self.store = store
        self.requester = requester
        self._pattern = thing_name_pattern
        self._clock = clock

    # -- CommandBackend ---------------------------------------------------------------

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        now = self._clock()
        try:
            request = self._request(body)
        except CommandRuleError as error:
            self._audit_refusal(body, error, now)
            raise
        token = request.client_token
        command = new_command(
            request, now=now, command_id=command_id_for(self.requester, token) if token else None
        )
        try:
            payload = command.payload()
        except CommandRuleError as error:
            self._audit_refusal(body, error, now)
            raise
        item = execution_item(request, command, requester=self.requester)
        existing = self.store.insert(item)
        if existing is not None:
            try:
                return shown_record(replayed(existing, request), now=now)
            except CommandRuleError as error:
                self._audit_refusal(body, error, now)
                raise
        self._publish(command, payload, now)
        self._audit(**sent_fields(request, command, now))
        return shown_record(item, now=now)

    def get(self, command_id: str) -> dict[str, Any]:
        validate_command_id(command_id)
        self.collect()
        now = self._clock()
        item = readable(self.store.get(command_id), self.catalogue, self.requester, command_id)
        self._audit(
            event="command.get", decision="allowed", commandId=command_id, at=format_time(now)
        )
        return shown_record(item, now=now)

    def list(self, *, thing: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        if thing is not None:
            validate_thing(thing, pattern=self._pattern)
        self.collect()
        now = self._clock()
        allowed = readable_commands(self.catalogue, self.requester)
        items = self.store.list(thing=thing, status=status, limit=1000, now=now)
        return [shown_record(i, now=now) for i in items if i.get("command") in allowed][:limit]

    # -- responses --------------------------------------------------------------------

    def collect(self, timeout: float = 2.0) -> int:
        """Pull what responses are waiting (one pull, at most ``timeout`` s) and handle each.

        Acknowledged: every response handled here, recorded or refused. Handed back
        (nack): a response for an id this store does not know, which may be another
        collector's (another operator's records); Pub/Sub offers it again, and after the
        subscription's maximum delivery attempts moves it to the dead-letter topic.
        Returns how many were handled.
        """
        try:
            answer = self._subscriber.pull(
                request={
                    "subscription": self.names.responses_subscription,
                    "max_messages": PULL_BATCH,
                    "return_immediately": False,
                },
                timeout=timeout,
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return 0
        except gexc.GoogleAPICallError as error:
            raise CommandBackendError(
                f"Pub/Sub: pulling responses from {self.names.responses_subscription} failed "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from None
        done: list[str] = []
        others: list[str] = []
        for received in answer.received_messages:
            outcome = self.handle_response(received.message.data, dict(received.message.attributes))
            (others if outcome.get("refused") == "unknown-id" else done).append(received.ack_id)
        subscription = self.names.responses_subscription
        if done:
            self._subscriber.acknowledge(request={"subscription": subscription, "ack_ids": done})
        if others:
            self._subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": others, "ack_deadline_seconds": 0}
            )
        return len(done) + len(others)

    def handle_response(self, data: bytes, attributes: Mapping[str, str]) -> dict[str, str]:
        """Complete a record from one response, or refuse it (audited); never raises."""
        now = self._clock()
        thing = attributes.get("thing", "")
        try:
            validate_thing(thing, pattern=self._pattern)
            correlation = _correlation(attributes.get("correlationData"))
            response = parse_response(data, thing=thing, correlation=correlation)
        except CommandRuleError as error:
            return self._refuse_response(error.field, error.problem, thing, None, now)
        item = self.store.get(response.id)
        reason = refusal_reason(item, thing=thing, now=now)
        if reason:
            return self._refuse_response(reason, "", thing, response.id, now)
        assert item is not None
        spec = self._spec_of(item)
        if response.status == "succeeded" and spec is not None:
            try:
                validate(response.result, spec.result, field_name="result")
            except SchemaError as error:
                return self._refuse_response("result", error.problem, thing, response.id, now)
        if not self.store.complete(
            response.id, thing=thing, values=completion(response, now=now), now=now
        ):
            return self._refuse_response("raced", "", thing, response.id, now)
        self._audit(
            event="command.response",
            decision="recorded",
            thing=thing,
            commandId=response.id,
            status=response.status,
            at=format_time(now),
        )
        return {"recorded": response.id, "status": response.status}

    def sweep(self) -> int:
        """Write ``timed-out`` into every pending record past its expiry (audited)."""
        now = self._clock()
        count = self.store.sweep(now=now)
        if count:
            self._audit(
                event="command.timeout", decision="timed-out", count=count, at=format_time(now)
            )
        return count

    # -- parts ----------------------------------------------------------------------

    def _request(self, body: Mapping[str, Any]) -> SendRequest:
        request = checked_request(
            body, self.catalogue, requester=self.requester, thing_name_pattern=self._pattern
        )
        return request

    def _publish(self, command: CommandMessage, payload: bytes, now: datetime) -> None:
        topic, thing, command_id = self.names.commands_topic, command.thing, command.id
        try:
            # commandId and expiresAt: the bridge sets MQTT 5 correlation data, response
            # topic and message expiry from them (and drops a command that waited too long).
            future = self._publisher.publish(
                topic,
                payload,
                ordering_key=thing,
                thing=thing,
                commandId=command_id,
                expiresAt=format_time(command.expires_at),
            )
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except Exception as error:
            # A failed ordered publish pauses the key: resume it for the next command.
            self._publisher.resume_publish(topic, thing)
            self.store.complete(
                command_id,
                thing=thing,
                values={
                    "status": "failed",
                    "error": "not published",
                    "completedAt": format_time(now),
                },
                now=now,
            )
            raise CommandBackendError(
                f"Pub/Sub: publishing to {topic} failed; the command was not sent "
                f"({type(error).__name__}: {str(error)[:200]})"
            ) from None

    def _spec_of(self, item: Mapping[str, Any] | None) -> Any:
        if item is None:
            return None
        return next((s for s in self.catalogue.commands if s.name == item.get("command")), None)

    def _refuse_response(
        self, reason: str, problem: str, thing: str, command_id: str | None, now: datetime
    ) -> dict[str, str]:
        self._audit(
            event="command.response",
            decision="refused",
            refused=reason,
            message=problem[:200] or None,
            thing=thing[:128] or None,
            commandId=command_id,
            at=format_time(now),
        )
        return {"refused": reason}

    def _audit_refusal(self, body: object, error: CommandRuleError, now: datetime) -> None:
        self._audit(**refusal_fields(body, error), at=format_time(now))

    def _audit(self, **fields: object) -> None:
        audit_log.info(
            "command audit",
            extra={"audit": audit_record(requester=self.requester, cloud="gcp", **fields)},
        )


def _correlation(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise CommandRuleError(
            "correlationData", f"{value[:40]!r} is not hex; allowed: the bridge's hex encoding"
        ) from None
