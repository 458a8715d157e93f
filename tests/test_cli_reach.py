"""`iot-remote-access reach` as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "iot-remote-access")
ARN = "arn:aws:iot:eu-west-1:123456789012:"
OWN = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": f"{ARN}client/${{iot:Connection.Thing.ThingName}}",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": f"{ARN}topic/dt/${{iot:Connection.Thing.ThingName}}/telemetry",
        },
    ]
}
WIDER = {
    "Statement": [
        *OWN["Statement"],
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}topic/dt/*"},
    ]
}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "reach", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_a_policy_and_an_acl_with_reach_exit_1_with_witnesses(tmp_path: Path) -> None:
    (tmp_path / "wide.json").write_text(json.dumps(WIDER))
    (tmp_path / "broker.acl").write_text("# devices\npattern readwrite cmd/%c/commands\n")
    result = _run("wide.json", "broker.acl", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "wide.json:wide: HIGH can publish 'dt/device-b/telemetry' of 'device-b'" in result.stdout
    assert "connected as client id 'device-b'" in result.stdout
    assert result.stderr == ""


def test_diff_reports_only_what_a_change_adds(tmp_path: Path) -> None:
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    (tmp_path / "before" / "device.json").write_text(json.dumps(OWN))
    (tmp_path / "after" / "device.json").write_text(json.dumps(WIDER))
    added = _run(
        "after/device.json", "--diff", "before/device.json", "--format", "json", cwd=tmp_path
    )
    assert added.returncode == 1
    (report,) = json.loads(added.stdout)
    assert [f["operation"] for f in report["findings"]] == ["publish"]
    same = _run("after/device.json", "--diff", "after/device.json", cwd=tmp_path)
    assert same.returncode == 0, same.stdout


def test_sarif_names_a_rule_and_the_witness(tmp_path: Path) -> None:
    (tmp_path / "wide.json").write_text(json.dumps(WIDER))
    result = _run("wide.json", "--format", "sarif", cwd=tmp_path)
    sarif = json.loads(result.stdout)
    (run,) = sarif["runs"]
    (finding,) = run["results"]
    assert finding["ruleId"] == "REACH002" and finding["level"] == "error"
    assert finding["properties"]["witness"] == "dt/device-b/telemetry"
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} >= {"REACH001", "REACH002"}


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        (None, ("missing.json",), "missing.json: no such file or directory"),
        ("pattern readwrite cmd/%u\nbogus line here\n", ("x.acl",), "x.acl: line 2: 'bogus"),
        ('{"Statement": [', ("x.json",), "x.json"),
        (json.dumps(OWN), ("--attacker", "a/#", "x.json"), "--attacker"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, args: tuple[str, ...], expected: str
) -> None:
    target = args[-1]
    if content is not None:
        (tmp_path / target).write_text(content)
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert expected in result.stderr


def test_a_hivemq_realm_is_read_and_its_client_id_placeholder_reported(tmp_path: Path) -> None:
    """The realm file as the GKE rendering writes it: ``${mqtt-clientid}`` is the client's."""
    from iot_remote_access.core.hivemq_permissions import (
        RealmRole,
        device_permissions,
        render_file_realm,
    )
    from iot_remote_access.core.topics import DeviceAccess

    realm = render_file_realm([RealmRole("fleet-ca", device_permissions(DeviceAccess()))])
    (tmp_path / "devices-realm.xml").write_text(realm)
    result = _run("devices-realm.xml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "devices-realm.xml:fleet-ca: HIGH can publish 'dt/device-b/telemetry'" in result.stdout
    assert "connected as client id 'device-b'" in result.stdout


def test_a_realm_with_an_entity_declaration_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "realm.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "aaaa">]>\n<ese-file-realm/>\n'
    )
    result = _run("realm.xml", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "realm.xml: a DOCTYPE or ENTITY declaration" in result.stderr
