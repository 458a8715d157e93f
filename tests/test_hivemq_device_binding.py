"""HiveMQ ``deviceBinding``: the setting, the certificate-bound devices realm and ``gcp
device-realm`` as an operator runs it (the console script in a subprocess)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.core.hivemq_device_realm import (
    MAX_CONFIG_MAP_BYTES,
    MAX_REALM_THINGS,
    DeviceRealmError,
    devices_realm,
    ese_files,
    parse_things,
)
from iot_remote_access.core.hivemq_permissions import (
    CLIENT_ID_PLACEHOLDER,
    RealmRole,
    RealmUser,
    parse_file_realm,
    render_file_realm,
    thing_permissions,
)
from iot_remote_access.core.reach_hivemq import RealmError, analyze_ese_files, analyze_realm
from iot_remote_access.core.topics import (
    THING_NAME_RULE,
    Access,
    CustomTopic,
    DeviceAccess,
    TopicModelError,
)
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.hivemq import EXAMPLE_SETTINGS, example_raw

CLI = str(Path(sys.executable).parent / "iot-remote-access")
FLEET = ("device-a", "device-b", "gw:eu_7")
Run = subprocess.CompletedProcess[str]


def _settings(**hivemq: Any) -> FleetSettings:
    raw = example_raw()
    raw["hivemq"].update(hivemq)
    return FleetSettings.parse(raw)


def test_the_default_binding_is_the_certificate() -> None:
    hivemq = _settings().hivemq
    assert hivemq is not None and hivemq.device_binding == "certificate"
    chosen = _settings(deviceBinding="clientId").hivemq
    assert chosen is not None and chosen.device_binding == "clientId"


@pytest.mark.parametrize("value", ["client-id", "CERTIFICATE", "", 1, ["certificate"]])
def test_an_unknown_binding_is_refused_naming_field_value_and_choices(value: object) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(deviceBinding=value)
    (line,) = str(caught.value).splitlines()
    assert line.startswith("iot-remote-access.hivemq.deviceBinding: ")
    assert "allowed: 'certificate'" in line and "'clientId'" in line


# -- the thing list: bounded, hostile names refused ------------------------------------------


def test_the_thing_list_skips_comments_and_blank_lines_and_keeps_one_of_each() -> None:
    text = "# fleet eu\ndevice-a\n\n  gw:eu_7  \ndevice-a\n"
    assert parse_things(text, source="things") == ("device-a", "gw:eu_7")


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("dt/+/#", "'dt/+/#'"),
        ("device-a</name><name>device-b", "'device-a</name><name>device-b'"),
        ("${mqtt-clientid}", "'${mqtt-clientid}'"),
        ("x" * 129, "'xxxxxxxx"),
    ],
)
def test_a_hostile_thing_name_is_refused_with_line_value_and_rule(line: str, shown: str) -> None:
    with pytest.raises(TopicModelError) as caught:
        parse_things(f"device-a\n{line}\n", source="things.txt")
    message = str(caught.value)
    assert message.startswith("things.txt line 2: ")
    assert shown in message and f"allowed: {THING_NAME_RULE}" in message


def test_more_things_than_the_maximum_are_refused_before_rendering() -> None:
    text = "\n".join(f"d-{n}" for n in range(MAX_REALM_THINGS + 1))
    with pytest.raises(DeviceRealmError, match=f"more than {MAX_REALM_THINGS} things; allowed"):
        parse_things(text, source="things")
    assert len(parse_things(text.rsplit("\n", 1)[0], source="things")) == MAX_REALM_THINGS


def test_the_realm_grows_linearly_and_a_config_map_over_1_mib_is_refused() -> None:
    """1,000 things of 32 characters with rotation and responses fit Kubernetes' 1 MiB; with
    128-character names and a declared topic they would not, and that is one clear error."""
    common = DeviceAccess(rotation=True, command_responses=True)
    widest = DeviceAccess(
        rotation=True,
        command_responses=True,
        custom=(CustomTopic("health", "dt/{thing}/health", Access.PUBLISH),),
    )

    def size(access: DeviceAccess, width: int, count: int) -> int:
        things = [f"{n:0{width}d}" for n in range(count)]
        files = ese_files(
            access, binding="certificate", fleet_ca_names=(), bridge=None, things=things
        )
        return sum(len(text) for text in files.values())

    per_thing = size(common, 32, 2) - size(common, 32, 1)
    assert size(common, 32, 10) - size(common, 32, 9) == per_thing
    assert size(common, 32, MAX_REALM_THINGS) <= MAX_CONFIG_MAP_BYTES
    with pytest.raises(DeviceRealmError) as caught:
        size(widest, 128, MAX_REALM_THINGS)
    assert str(caught.value).startswith("things: the ESE ConfigMap would be ")
    assert f"allowed: at most {MAX_CONFIG_MAP_BYTES}" in str(caught.value)


# -- gcp device-realm, the console script in a subprocess ----------------------------------


def _device_realm(*args: str, stdin: str = "", settings: Path = EXAMPLE_SETTINGS) -> Run:
    return subprocess.run(
        [CLI, "gcp", "device-realm", "--settings", str(settings), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _error_line(result: Run) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("!!")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        ("device-a\ndt/#\n", "error: --things '-' line 2: 'dt/#' is not a valid thing name; "),
        ("a\nb c\n", "error: --things '-' line 2: 'b c' is not a valid thing name; allowed: "),
        (
            "\n".join(f"d-{n}" for n in range(MAX_REALM_THINGS + 1)),
            f"error: --things '-': more than {MAX_REALM_THINGS} things; allowed: at most",
        ),
        ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "error: --things '-'"),
    ],
    ids=["wildcards", "space", "over-the-maximum", "not-ascii"],
)
def test_device_realm_refuses_bad_input_in_one_line(stdin: str, expected: str) -> None:
    assert _error_line(_device_realm("--things", "-", stdin=stdin)).startswith(expected)


def test_device_realm_refuses_an_oversized_list_without_reading_it_all(tmp_path: Path) -> None:
    things = tmp_path / "things.txt"
    things.write_bytes(b"#" * (2 * 1024 * 1024))
    assert "larger than 1048576 bytes" in _error_line(_device_realm("--things", str(things)))


def test_device_realm_refuses_the_client_id_binding(tmp_path: Path) -> None:
    raw = example_raw()
    raw["hivemq"]["deviceBinding"] = "clientId"
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    line = _error_line(_device_realm("--things", "-", stdin="device-a\n", settings=settings))
    assert "hivemq.deviceBinding: 'clientId' has no device list" in line
    assert "allowed: 'certificate'" in line


def test_the_listed_realm_has_no_lateral_reach_by_the_reach_console_script(
    tmp_path: Path,
) -> None:
    """gcp device-realm --format xml | reach: each thing reaches only its own topics."""
    result = _device_realm("--things", "-", "--format", "xml", stdin="\n".join(FLEET))
    assert result.returncode == 0, result.stderr
    realm = tmp_path / "devices-realm.xml"
    realm.write_text(result.stdout)
    reach = _reach(realm)
    assert reach.returncode == 0, reach.stdout
    for thing in FLEET:
        assert f"devices-realm.xml:{thing}" in reach.stdout
    roles, users = parse_file_realm(result.stdout)
    assert [(u.name, u.roles) for u in users] == [(thing, (thing,)) for thing in FLEET]
    assert [r.role_id for r in roles] == list(FLEET)
    assert CLIENT_ID_PLACEHOLDER not in result.stdout


def test_the_client_id_realm_is_reported_by_the_reach_console_script(tmp_path: Path) -> None:
    """What deviceBinding: clientId renders: reach finds the other device's topics."""
    realm = tmp_path / "devices-realm.xml"
    realm.write_text(
        devices_realm(
            DeviceAccess(), binding="clientId", fleet_ca_names=("Fleet CA 1",), things=FLEET
        )
    )
    reach = _reach(realm)
    assert reach.returncode == 1, reach.stdout
    assert "HIGH can publish 'dt/device-b/telemetry' of 'device-b'" in reach.stdout
    assert "connected as client id 'device-b'" in reach.stdout


def _reach(path: Path) -> Run:
    return subprocess.run(
        [CLI, "reach", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- reach reads the ESE files as the pipelines do ------------------------------------------


def test_a_per_device_realm_behind_a_role_key_pipeline_is_reported() -> None:
    """Not a vacuous pass: the realm alone is clean, but a pipeline that selects roles by
    the issuer's CN would let any certificate hold every thing's role."""
    files = ese_files(
        DeviceAccess(), binding="certificate", fleet_ca_names=(), bridge=None, things=FLEET
    )
    assert all(not r.lateral for r in analyze_ese_files(files))
    role_key = dict(files)
    role_key["config.xml"] = (
        files["config.xml"]
        .replace("<use-authorization-key>true", "<use-authorization-key>false")
        .replace("<use-authorization-role-key>false", "<use-authorization-role-key>true")
    )
    reports = analyze_ese_files(role_key, attacker="device-a")
    # device-a holding its own role is fine; holding device-b's or gw:eu_7's is not.
    lateral = {r.source for r in reports if r.lateral}
    assert lateral == {"ese:devices:device-b", "ese:devices:gw:eu_7"}


def test_ese_files_without_the_realm_a_pipeline_names_are_refused() -> None:
    files = ese_files(DeviceAccess(), binding="certificate", fleet_ca_names=(), bridge=None)
    del files["devices-realm.xml"]
    with pytest.raises(
        RealmError, match=re.escape("pipeline 'devices': realm file 'devices-realm.xml'")
    ):
        analyze_ese_files(files)
    with pytest.raises(RealmError, match=re.escape("no config.xml")):
        analyze_ese_files({"devices-realm.xml": "<ese-file-realm/>"})


def test_the_analysis_is_bounded_by_roles_times_holders_not_only_users() -> None:
    """One device user holding 1,001 roles is 1,001 analyses: refused, not run for minutes."""
    roles = [RealmRole(f"r{n}", thing_permissions(DeviceAccess(), "device-a")) for n in range(1001)]
    realm = render_file_realm(roles, [RealmUser("device-a", tuple(r.role_id for r in roles))])
    with pytest.raises(RealmError, match="1001 role analyses"):
        analyze_realm(realm)
    files = ese_files(
        DeviceAccess(), binding="certificate", fleet_ca_names=(), bridge=None, things=FLEET
    )
    pipeline = files["config.xml"].split("<pipelines>")[1].split("</pipelines>")[0]
    many = dict(files)
    many["config.xml"] = files["config.xml"].replace(pipeline, pipeline * 9)
    with pytest.raises(RealmError, match="9 listener pipelines; allowed: at most 8"):
        analyze_ese_files(many)
