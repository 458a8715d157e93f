"""The rotation settings `certs plan` plans with: the deployment's, so the plan is the stack's.

Where they come from, first match wins:

1. ``--settings FILE`` (JSON or YAML; the settings may sit under ``iot-remote-access``);
2. ``cdk.json`` in the working folder, its ``context`` key ``iot-remote-access``
   (``settings.CONTEXT_KEY``, what the app passes to the stack);
3. neither: the library's defaults, and the plan says so.

The rule for flags: ``--lead-days`` and ``--hourly-budget`` given on the command
line win over the settings for that one value (a what-if), and a note on stderr
names each value they replaced. A deployment whose settings have no
``certificates`` section runs no rotation: planning for it is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iot_remote_access.cli.errors import InputError, settings_input_error
from iot_remote_access.core.bounded_input import BoundedInputError
from iot_remote_access.core.rotation_plan import RotationSettings
from iot_remote_access.settings import CONTEXT_KEY, SettingsError
from iot_remote_access.settings.certificates import CertificateSettings
from iot_remote_access.settings.files import read_settings_file

CDK_JSON = "cdk.json"
#: flag -> (RotationSettings field, settings key), for the flags that may override.
OVERRIDES = {
    "--lead-days": ("lead_days", "leadTimeDays"),
    "--hourly-budget": ("hourly_budget", "hourlyRotationBudget"),
}


@dataclass(frozen=True)
class PlanSettings:
    rotation: RotationSettings
    #: Where the settings came from, for people: "cdk.json (context.iot-remote-access)".
    source: str
    #: One line per flag that replaced a value of the settings.
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            **{_camel(f.name): getattr(self.rotation, f.name) for f in _fields()},
            "overridden": [note.split(" ", 1)[0] for note in self.notes],
        }


def plan_settings(
    settings_file: Path | None, flags: Mapping[str, int | None], folder: Path
) -> PlanSettings:
    """The deployment's rotation settings with the given flags (``--lead-days``: value) applied."""
    certificates, source = _deployed(settings_file, folder)
    rotation = certificates.rotation_settings() if certificates else RotationSettings()
    changes: dict[str, int] = {}
    notes = []
    for flag, value in flags.items():
        if value is None:
            continue
        field, key = OVERRIDES[flag]
        current = getattr(rotation, field)
        changes[field] = value
        if value != current:
            notes.append(f"{flag} {value} replaces {key} {current} of {source}")
    try:
        rotation = dataclasses.replace(rotation, **changes)
    except ValueError as error:
        raise InputError(f"--{str(error).replace('_', '-')}") from None
    return PlanSettings(rotation, source, tuple(notes))


def _deployed(settings_file: Path | None, folder: Path) -> tuple[CertificateSettings | None, str]:
    if settings_file is not None:
        raw, source, where = _read(settings_file, "--settings"), str(settings_file), "--settings"
        if isinstance(raw, Mapping) and CONTEXT_KEY in raw:
            raw = raw[CONTEXT_KEY]
    else:
        path = folder / CDK_JSON
        if not path.is_file():
            return None, "the library's defaults (no cdk.json here; --settings FILE)"
        cdk_json = _read(path, CDK_JSON)
        context = cdk_json.get("context") if isinstance(cdk_json, Mapping) else None
        if not isinstance(context, Mapping) or CONTEXT_KEY not in context:
            return None, f"the library's defaults ({CDK_JSON} has no context.{CONTEXT_KEY})"
        raw, source, where = context[CONTEXT_KEY], f"{CDK_JSON} context.{CONTEXT_KEY}", CDK_JSON
    from iot_remote_access.settings.fleet import FleetSettings

    try:
        settings = FleetSettings.parse(raw, source=source)
    except SettingsError as error:
        raise settings_input_error(error) from None
    if settings.certificates is None:
        raise InputError(
            f"{where}: {source}.certificates: not set, so the stack rotates no certificates; "
            "allowed: a certificates section (an empty object for the defaults)"
        )
    return settings.certificates, source


def _read(path: Path, where: str) -> Any:
    try:
        return read_settings_file(path)
    except BoundedInputError as error:
        # The error names the file; an option is named too when one gave it.
        raise InputError(f"{where}: {error}" if where.startswith("--") else str(error)) from None


def _fields() -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(RotationSettings)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
