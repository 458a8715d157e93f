"""FleetSettings: defaults, and messages that name the field, the value and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.paths import REPO_ROOT


def test_defaults_are_the_safe_topic_layout() -> None:
    settings = FleetSettings.parse(None)
    assert settings.telemetry_topic == "dt/{thing}/telemetry"
    assert settings.commands_topic == "cmd/{thing}/commands"
    assert settings.thing_name_pattern == "[a-zA-Z0-9:_-]{1,128}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"telemetryTopic": "dt/+/telemetry"},
            r"^iot-remote-access\.telemetryTopic: 'dt/\+/telemetry' contains '\+'; allowed:",
        ),
        (
            {"commandsTopic": "$aws/things/{thing}/x"},
            r"^iot-remote-access\.commandsTopic: '\$aws/things/\{thing\}/x' starts with '\$'",
        ),
        (
            {"commandsTopic": "cmd/commands"},
            r"^iot-remote-access\.commandsTopic: 'cmd/commands' has no \{thing\}",
        ),
        (
            {"telemetryTopic": "a//{thing}"},
            r"telemetryTopic: 'a//\{thing\}' has an empty topic level",
        ),
        (
            {"telemetryTopic": 5},
            r"^iot-remote-access\.telemetryTopic: 5 is a number; allowed: a string",
        ),
        (
            {"thingNamePattern": "sensor-("},
            r"thingNamePattern: 'sensor-\(' is not a regular expression",
        ),
        (
            {"telemtryTopic": "dt/{thing}/t"},
            r"^iot-remote-access\.telemtryTopic: unknown setting; allowed: telemetryTopic, commandsTopic",
        ),
        (
            {"telemetryTopic": "x/{thing}/y", "commandsTopic": "x/{thing}/y"},
            r"commands: 'x/\{thing\}/y' is also used for telemetry",
        ),
    ],
)
def test_bad_settings_name_field_value_and_rule(raw: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FleetSettings.parse(raw)


def test_every_problem_is_reported_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as error:
        FleetSettings.parse({"telemetryTopic": "#", "commandsTopic": "+"})
    lines = str(error.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("iot-remote-access.telemetryTopic: '#'")
    assert lines[1].startswith("iot-remote-access.commandsTopic: '+'")


def test_settings_are_not_an_object() -> None:
    with pytest.raises(
        SettingsError, match=r"^iot-remote-access: expected an object of settings, got a list"
    ):
        FleetSettings.parse(["dt/{thing}/t"])  # type: ignore[arg-type]


def test_thing_name_pattern_narrows_names() -> None:
    settings = FleetSettings.parse({"thingNamePattern": "sensor-[0-9]{3}"})
    assert settings.thing_name_matches("sensor-001")
    assert not settings.thing_name_matches("sensor-001x")


def test_from_yaml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("iot-remote-access:\n  telemetryTopic: up/{thing}\n")
    (tmp_path / "s.json").write_text(json.dumps({"commandsTopic": "down/{thing}"}))
    assert FleetSettings.from_file(tmp_path / "s.yaml").telemetry_topic == "up/{thing}"
    assert FleetSettings.from_file(tmp_path / "s.json").commands_topic == "down/{thing}"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(SettingsError, match=r"bad\.json: not valid JSON"):
        FleetSettings.from_file(bad)
    with pytest.raises(SettingsError, match=r"missing\.yaml: cannot read settings \(No such file"):
        FleetSettings.from_file(tmp_path / "missing.yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("telemetryTopic: 'dt/#'\n")
    with pytest.raises(SettingsError, match=r"wrong\.yaml\.telemetryTopic: 'dt/#' contains '#'"):
        FleetSettings.from_file(wrong)


def test_app_stops_synth_with_one_line_naming_the_field(tmp_path: Path) -> None:
    """app.py as `cdk synth` runs it, with bad context: exit 2, one line, no traceback."""
    context = {"iot-remote-access": {"telemetryTopic": "dt/+/telemetry"}}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env={
            **__import__("os").environ,
            "CDK_CONTEXT_JSON": json.dumps(context),
            "CDK_OUTDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        "error: invalid settings: iot-remote-access.telemetryTopic: 'dt/+/telemetry' contains "
        "'+'; allowed: literal topic levels and the placeholder {thing}, no wildcards or "
        "policy variables"
    ]
