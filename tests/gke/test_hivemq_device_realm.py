"""`gcp manifests` with ``hivemq.deviceBinding``: the certificate-bound devices realm as
deployed, checked with kubernetes-validate and the chart schema, agreeing with `gcp
device-realm`, and proved by `iot-remote-access reach` (console scripts in subprocesses)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from iot_remote_access.core.hivemq_permissions import (
    CLIENT_ID_PLACEHOLDER,
    allows,
    device_access_topics,
    granted_topics,
    parse_file_realm,
)
from iot_remote_access.core.topics import Access, DeviceAccess
from iot_remote_access.settings import FleetSettings
from tests.support.hivemq import EXAMPLE_SETTINGS, Synthesized, example_raw, values_schema

CLI = str(Path(sys.executable).parent / "iot-remote-access")
THINGS = ("sensor-000001", "gateway:eu_1", "x" * 128)
ESE_CONFIG_MAP = "hivemq-ese-config"
CHECKSUM = "iot-remote-access.io/devices-realm-sha256"


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    settings = FleetSettings.parse(example_raw())
    return Synthesized(settings, tmp_path_factory.mktemp("listed"), things=THINGS)


@pytest.fixture(scope="module")
def client_id(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    raw = example_raw()
    raw["hivemq"]["deviceBinding"] = "clientId"
    return Synthesized(FleetSettings.parse(raw), tmp_path_factory.mktemp("client-id"))


def _files(synthesized: Synthesized) -> dict[str, str]:
    data: dict[str, str] = synthesized.get("ConfigMap", ESE_CONFIG_MAP)["data"]
    return data


def _devices_pipeline(synthesized: Synthesized) -> ET.Element:
    root = ET.fromstring(_files(synthesized)["config.xml"])
    pipeline = root.find("pipelines/listener-pipeline[@listener='devices']")
    assert pipeline is not None
    return pipeline


def test_the_listed_manifests_are_valid_kubernetes_and_chart_values(listed: Synthesized) -> None:
    hivemq = listed.settings.hivemq
    assert hivemq is not None
    for obj in listed.objects.values():
        kubernetes_validate.validate(obj, hivemq.kubernetes_version, strict=True)
    jsonschema.Draft202012Validator(values_schema()).validate(listed.values)


def test_the_devices_pipeline_selects_a_realm_user_by_the_subject_cn(listed: Synthesized) -> None:
    pipeline = _devices_pipeline(listed)
    extractions = {
        (e.findtext("x509-field"), e.findtext("ese-variable"))
        for e in pipeline.iterfind(".//x509-extraction")
    }
    assert ("subject-common-name", "authorization-key") in extractions
    assert ("issuer-common-name", "authorization-role-key") not in extractions
    manager = pipeline.find("file-authorization-manager")
    assert manager is not None
    assert manager.findtext("use-authorization-key") == "true"
    assert manager.findtext("use-authorization-role-key") == "false"


def test_each_listed_thing_gets_exactly_its_own_topics_whatever_its_client_id(
    listed: Synthesized,
) -> None:
    roles, users = parse_file_realm(_files(listed)["devices-realm.xml"])
    assert sorted(u.name for u in users) == sorted(THINGS)
    by_id = {role.role_id: role for role in roles}
    for user in users:
        (role_id,) = user.roles
        permissions = by_id[role_id].permissions
        assert all(CLIENT_ID_PLACEHOLDER not in p.topic for p in permissions)
        # The client id the device sends changes nothing: the topics are literal.
        for client_id in (user.name, "sensor-000001", "someone-else"):
            assert granted_topics(permissions, client_id) == device_access_topics(
                DeviceAccess(), user.name
            )
        assert not allows(permissions, "someone-else", Access.PUBLISH, "dt/someone-else/telemetry")


def test_the_realm_checksum_is_on_the_config_map_and_the_broker_pods(
    listed: Synthesized, tmp_path: Path
) -> None:
    """A changed realm changes the pod template: ``helm upgrade`` rolls the broker."""
    realm = _files(listed)["devices-realm.xml"]
    checksum = hashlib.sha256(realm.encode()).hexdigest()
    config_map = listed.get("ConfigMap", ESE_CONFIG_MAP)
    assert config_map["metadata"]["annotations"][CHECKSUM] == checksum
    assert listed.values["nodes"]["annotations"][CHECKSUM] == checksum
    reordered = Synthesized(listed.settings, tmp_path / "same", things=THINGS[::-1])
    assert reordered.values["nodes"]["annotations"][CHECKSUM] == checksum
    joined = Synthesized(listed.settings, tmp_path / "joined", things=(*THINGS, "device-new"))
    assert joined.values["nodes"]["annotations"][CHECKSUM] != checksum


def test_gcp_device_realm_prints_the_config_map_gcp_manifests_writes(listed: Synthesized) -> None:
    result = subprocess.run(
        [CLI, "gcp", "device-realm", "--settings", str(EXAMPLE_SETTINGS), "--things", "-"],
        input="# the fleet\n" + "\n".join(THINGS) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed: dict[str, Any] = yaml.safe_load(result.stdout)
    kubernetes_validate.validate(printed, "1.33", strict=True)
    assert printed == listed.get("ConfigMap", ESE_CONFIG_MAP)
    checksum = printed["metadata"]["annotations"][CHECKSUM]
    assert f"devices-realm-sha256={checksum}" in result.stderr


def test_with_no_list_the_realm_is_empty_but_valid(tmp_path: Path) -> None:
    """The default manifests: nothing for anyone until things are listed."""
    empty = Synthesized(FleetSettings.parse(example_raw()), tmp_path)
    realm = _files(empty)["devices-realm.xml"]
    assert ET.fromstring(realm).tag == "ese-file-realm"
    assert parse_file_realm(realm) == ((), ())


def test_the_client_id_binding_renders_todays_role_and_pipeline(client_id: Synthesized) -> None:
    manager = _devices_pipeline(client_id).find("file-authorization-manager")
    assert manager is not None and manager.findtext("use-authorization-role-key") == "true"
    roles, users = parse_file_realm(_files(client_id)["devices-realm.xml"])
    assert users == () and [r.role_id for r in roles] == ["Fleet Device CA 1"]
    (role,) = roles
    assert all(CLIENT_ID_PLACEHOLDER in p.topic for p in role.permissions)
    for thing in THINGS:
        assert granted_topics(role.permissions, thing) == device_access_topics(
            DeviceAccess(), thing
        )


def _reach_config_map(synthesized: Synthesized) -> subprocess.CompletedProcess[str]:
    """`reach` on the ESE ConfigMap file exactly as `gcp manifests` wrote it: config.xml's
    pipelines say how each realm is read (by subject CN or by issuer CN)."""
    (path,) = [
        p
        for p in (synthesized.out_dir / "manifests").glob("*.yaml")
        if f"name: {ESE_CONFIG_MAP}" in p.read_text(encoding="utf-8")
    ]
    return subprocess.run(
        [CLI, "reach", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_reach_proves_the_listed_manifests_and_reports_the_client_id_ones(
    listed: Synthesized, client_id: Synthesized
) -> None:
    bound = _reach_config_map(listed)
    assert bound.returncode == 0, bound.stdout + bound.stderr
    for thing in THINGS:
        assert f":devices:{thing}: no device reaches another's topics" in bound.stdout
    assert ":bridge:bridge: no device reaches another's topics" in bound.stdout
    hole = _reach_config_map(client_id)
    assert hole.returncode == 1, hole.stdout + hole.stderr
    assert ":devices:Fleet Device CA 1: HIGH can publish 'dt/device-b/telemetry'" in hole.stdout
    assert "connected as client id 'device-b'" in hole.stdout


@pytest.mark.parametrize(
    ("binding", "stdin", "expected"),
    [
        ("clientId", "device-a\n", "error: --things: hivemq.deviceBinding is 'clientId'"),
        ("certificate", "ok\n../etc\n", "error: --things '-' line 2: '../etc' is not a valid"),
    ],
)
def test_gcp_manifests_refuses_a_bad_thing_list_in_one_line(
    binding: str, stdin: str, expected: str, tmp_path: Path
) -> None:
    raw = example_raw()
    raw["hivemq"]["deviceBinding"] = binding
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    out = tmp_path / "out"
    result = subprocess.run(
        [CLI, "gcp", "manifests", "--settings", str(settings), "--out", str(out), "--things", "-"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("!!")]
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert not out.exists()
