"""Remote commands on Azure: the catalogue mapped onto IoT Hub direct methods.

A direct method is IoT Hub's own request/response: the hub delivers the call to the
connected device and holds the HTTPS request open until the device answers or the
timeout ends. So one call is one execution, and the record completes in that call:

================================  =================================================
catalogue                         direct method
================================  =================================================
``name``                          ``methodName`` (``[a-z][a-z0-9-]{0,62}`` fits the
                                  device topic ``$iothub/methods/POST/{name}/``)
the command envelope              ``payload``: the same JSON the MQTT path sends
                                  (``v, id, thing, name, arguments, issuedAt, expiresAt``)
``timeoutSeconds``                ``responseTimeoutInSeconds``: raised to IoT Hub's
                                  minimum of 5; above its maximum of 300 refused
                                  (400 ``timeoutSeconds``) before anything is sent
(option ``connect_timeout``)      ``connectTimeoutInSeconds``, 0..300, default 0:
                                  an offline device fails at once
the device's answer               ``payload``: the response envelope
                                  (``v, id, thing, status, result, error``), checked
                                  as on the MQTT path
================================  =================================================

Outcomes: the answer completes the record (``succeeded``/``failed``/``rejected``) only
if it is for this command, from this device, in time and valid; a malformed answer is
refused (audited) and the record stays pending (read: ``timed-out`` after expiry). The
hub's 504 (the device did not answer in time) writes ``timed-out``; 404103 (device not
online) writes ``failed`` with ``device-not-online``; 404001 (no such device) is a 404
on ``thing``; authentication, throttling and server errors raise
:class:`~iot_remote_access.core.command_backend.CommandBackendError` with the record
``failed`` (``not sent`` or ``hub error``), never retried (a direct method is not
idempotent). Every call is audited on the ``iot_remote_access.audit`` logger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from iot_remote_access.arm.direct_methods import (
    MAX_RESPONSE_TIMEOUT,
    MIN_RESPONSE_TIMEOUT,
    NOT_SENT,
    DirectMethodClient,
    DirectMethodError,
    MethodResult,
)
from iot_remote_access.core import strict_json
from iot_remote_access.core.command_backend import CommandBackendError
from iot_remote_access.core.command_executions import (
    TIMED_OUT,
    completion,
    execution_item,
    refusal_reason,
)
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
#: IoT Hub's device-id rule is wider than the thing-name rule; the fleet's rule applies.
DEVICE_NOT_FOUND = "404001"
DEVICE_NOT_ONLINE = "404103"


def _now() -> datetime:
    return datetime.now(UTC)


class AzureCommandService:
    """One caller's commands on one hub (``requester``: ``objectId:<Entra object id>``)."""

    def __init__(
        self,
        *,
        catalogue: CommandCatalogue,
        client: DirectMethodClient,
        store: ExecutionStore,
        requester: str,
        thing_name_pattern: str = THING_NAME_RULE,
        connect_timeout: int = 0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.catalogue = catalogue
        self.client = client
        self.store = store
        self.requester = requester
        self._pattern = thing_name_pattern
        self._connect_timeout = connect_timeout
        self._clock = clock

    # -- CommandBackend ---------------------------------------------------------------

    def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        now = self._clock()
        try:
            request = self._request(body)
            token = request.client_token
            command = new_command(
                request,
                now=now,
                command_id=command_id_for(self.requester, token) if token else None,
            )
            envelope = json.loads(command.payload())  # also bounds its size (8 KiB)
            item = execution_item(request, command, requester=self.requester)
            existing = self.store.insert(item)
            if existing is not None:
                return shown_record(replayed(existing, request), now=now)
        except CommandRuleError as error:
            self._audit(**refusal_fields(body, error), at=format_time(now))
            raise
        self._audit(**sent_fields(request, command, now))
        self._invoke(request, command, envelope)
        record = self.store.get(command.id)
        assert record is not None
        return shown_record(record, now=self._clock())

    def get(self, command_id: str) -> dict[str, Any]:
        validate_command_id(command_id)
        now = self._clock()
        item = readable(self.store.get(command_id), self.catalogue, self.requester, command_id)
        self._audit(
            event="command.get", decision="allowed", commandId=command_id, at=format_time(now)
        )
        return shown_record(item, now=now)

    def list(self, *, thing: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        if thing is not None:
            validate_thing(thing, pattern=self._pattern)
        now = self._clock()
        allowed = readable_commands(self.catalogue, self.requester)
        items = self.store.list(thing=thing, status=status, limit=1000, now=now)
        return [shown_record(i, now=now) for i in items if i.get("command") in allowed][:limit]

    # -- parts ----------------------------------------------------------------------

    def _request(self, body: Mapping[str, Any]) -> SendRequest:
        request = checked_request(
            body, self.catalogue, requester=self.requester, thing_name_pattern=self._pattern
        )
        if request.spec.timeout_seconds > MAX_RESPONSE_TIMEOUT:
            raise CommandRuleError(
                "timeoutSeconds",
                f"{request.spec.name!r} has {request.spec.timeout_seconds} s; allowed on Azure: "
                f"at most {MAX_RESPONSE_TIMEOUT} (IoT Hub's direct method limit)",
            )
        return request

    def _invoke(self, request: SendRequest, command: CommandMessage, envelope: Any) -> None:
        try:
            result = self.client.invoke(
                request.thing,
                request.spec.name,
                envelope,
                response_timeout=max(MIN_RESPONSE_TIMEOUT, request.spec.timeout_seconds),
                connect_timeout=self._connect_timeout,
            )
        except DirectMethodError as error:
            self._hub_refused(command, error)
            return
        self._answer(command, result)

    def _hub_refused(self, command: CommandMessage, error: DirectMethodError) -> None:
        now = self._clock()
        if error.status == 504:
            self._finish(command, {"status": TIMED_OUT}, "timed-out", now)
            return
        if error.status == 404 and error.code == DEVICE_NOT_ONLINE:
            values = {"status": "failed", "error": "device-not-online"}
            self._finish(command, values, "device-not-online", now)
            return
        sent = error.status not in (NOT_SENT, 401, 403) and error.code != DEVICE_NOT_FOUND
        values = {"status": "failed", "error": "hub error" if sent else "not sent"}
        self._finish(command, values, f"hub {error.status} {error.code}".strip(), now)
        if error.status == 404 and error.code == DEVICE_NOT_FOUND:
            raise CommandRuleError(
                "thing",
                f"{command.thing!r} is not a device of the hub; allowed: a registered device",
                status=404,
            )
        raise CommandBackendError(
            f"IoT Hub: direct method {command.name!r} on {command.thing!r}: "
            f"{error.status} {error.code} {error.message}".strip()
        )

    def _finish(
        self, command: CommandMessage, values: dict[str, Any], outcome: str, now: datetime
    ) -> None:
        # The hub's verdict ends the record even past its expiry (a 504 comes after it).
        self.store.complete(
            command.id,
            thing=command.thing,
            values={**values, "completedAt": format_time(now)},
            now=command.expires_at if now > command.expires_at else now,
        )
        self._audit(
            event="command.response",
            decision="recorded",
            thing=command.thing,
            commandId=command.id,
            status=values["status"],
            outcome=outcome,
            at=format_time(now),
        )

    def _answer(self, command: CommandMessage, result: MethodResult) -> None:
        """The device's answer completes the record under the MQTT path's rules."""
        now = self._clock()
        spec = self.catalogue.get(command.name)
        try:
            data = strict_json.dumps(result.payload).encode("utf-8")
            response = parse_response(data, thing=command.thing, spec=spec)
        except (CommandRuleError, TypeError, ValueError) as error:
            field = error.field if isinstance(error, CommandRuleError) else "payload"
            self._refused(command, "malformed", field, now)
            return
        if response.id != command.id:
            self._refused(command, "wrong-id", "id", now)
            return
        reason = refusal_reason(self.store.get(command.id), thing=command.thing, now=now)
        if reason or not self.store.complete(
            command.id, thing=command.thing, values=completion(response, now=now), now=now
        ):
            self._refused(command, reason or "raced", "", now)
            return
        self._audit(
            event="command.response",
            decision="recorded",
            thing=command.thing,
            commandId=command.id,
            status=response.status,
            deviceStatus=result.status,
            at=format_time(now),
        )

    def _refused(self, command: CommandMessage, reason: str, field: str, now: datetime) -> None:
        self._audit(
            event="command.response",
            decision="refused",
            refused=reason,
            field=field or None,
            thing=command.thing,
            commandId=command.id,
            at=format_time(now),
        )

    def _audit(self, **fields: object) -> None:
        audit_log.info(
            "command audit",
            extra={"audit": audit_record(requester=self.requester, cloud="azure", **fields)},
        )
