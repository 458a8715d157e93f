"""``iot-remote-access command ... --cloud gcp``: the GCP command service, run by the CLI.

``backend(settings, options)`` builds a
:class:`~iot_remote_access.pubsub.command_service.GcpCommandService` for the caller:

- catalogue and topic names from the settings file (``commands``, ``gcp.pubsub``),
- the caller's Google principal from Application Default Credentials
  (``serviceAccount:<email>`` for a service account, ``user:<email>`` for user
  credentials that name their account); ``options["principal"]`` only against the
  Pub/Sub emulator (``PUBSUB_EMULATOR_HOST``), for tests and local trials,
- execution records in ``options["records"]`` (a SQLite file), default
  ``$XDG_STATE_HOME/iot-remote-access/gcp-commands.sqlite``.

Options read: ``project``, ``principal``, ``records``. Problems are one line
(:class:`~iot_remote_access.cli.errors.InputError`, exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from iot_remote_access.cli.errors import InputError
from iot_remote_access.core.command_backend import CommandBackend, CommandBackendError
from iot_remote_access.core.commands import CommandRuleError, validate_senders
from iot_remote_access.core.gcp_rules import validate_project_id
from iot_remote_access.settings import FleetSettings

RECORDS_FILE = "gcp-commands.sqlite"
#: Against the Pub/Sub emulator only (there are no Google credentials there): who the
#: caller is, as a catalogue sender (``serviceAccount:...`` or ``user:...``).
EMULATOR_PRINCIPAL_VARIABLE = "IOT_REMOTE_ACCESS_GCP_PRINCIPAL"


def backend(settings: FleetSettings | None, options: dict[str, Any]) -> CommandBackend:
    """The GCP command backend for this caller (raises InputError on unusable input)."""
    if settings is None or settings.gcp is None:
        raise InputError("--cloud gcp needs a settings file with a gcp section (--settings)")
    if not settings.commands.enabled:
        raise InputError(
            "commands.enabled: false; allowed: true with a catalogue (docs/commands.md)"
        )
    project = _project(settings, options.get("project"))
    from google.cloud import pubsub_v1

    from iot_remote_access.core.command_store import ExecutionStore
    from iot_remote_access.pubsub.command_service import GcpCommandService, PubsubNames

    pubsub = settings.gcp.pubsub
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    return GcpCommandService(
        catalogue=settings.commands.command_catalogue(),
        names=PubsubNames.of(project, pubsub.commands_topic, pubsub.responses_subscription),
        publisher=publisher,
        subscriber=pubsub_v1.SubscriberClient(),
        store=ExecutionStore(_records(options.get("records"))),
        requester=principal(
            options.get("principal") or os.environ.get(EMULATOR_PRINCIPAL_VARIABLE)
        ),
        thing_name_pattern=settings.thing_name_pattern,
    )


def _project(settings: FleetSettings, given: object) -> str:
    assert settings.gcp is not None
    project = given if given is not None else settings.gcp.project_id
    if project is None:
        raise InputError("gcp.projectId: not set; allowed: a project id, or --project")
    try:
        return validate_project_id(project, field_name="project")
    except ValueError as error:
        raise InputError(str(error)) from None


def _records(given: object) -> Path:
    if given is not None:
        return Path(str(given))
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "iot-remote-access" / RECORDS_FILE


def principal(given: object) -> str:
    """The caller as a catalogue sender names it (``serviceAccount:`` or ``user:``)."""
    if given is not None:
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            raise InputError(
                "principal: may be stated only against the Pub/Sub emulator; allowed: "
                "your Application Default Credentials decide who you are"
            )
        return _checked(str(given))
    try:
        import google.auth
        from google.auth import exceptions as auth_exc

        credentials, _ = google.auth.default()
    except auth_exc.DefaultCredentialsError as error:
        raise CommandBackendError(f"Google credentials: {str(error)[:200]}") from None
    email = getattr(credentials, "service_account_email", None)
    if isinstance(email, str) and "@" in email:
        return _checked(f"serviceAccount:{email}")
    account = getattr(credentials, "account", None)
    if isinstance(account, str) and "@" in account:
        return _checked(f"user:{account}")
    raise InputError(
        "principal: your Application Default Credentials name no account; allowed: a service "
        "account, or `gcloud auth application-default login` credentials that name it"
    )


def _checked(value: str) -> str:
    try:
        validate_senders([value])
    except CommandRuleError as error:
        raise InputError(f"principal: {error.problem}") from None
    return value
