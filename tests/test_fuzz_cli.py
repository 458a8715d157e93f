"""Fuzz: every CLI command and every settings source against hostile input (issue 14).

Each test draws hostile input (see ``tests.support.hostile_cli``) and runs the real
entry point in-process (``iot_remote_access.cli.main``), asserting the contract:
exit 2, one short terminal-safe line naming the field or file, no traceback,
nothing on stdout, nothing written, bounded time and memory. CI runs a modest,
derandomized number of examples (the ``ci`` profile of ``tests/conftest.py``);
``IRA_FUZZ_EXAMPLES=2000`` runs the long campaign (docs/hostile-cli.md).
A few representative cases run the installed console script in a subprocess:
``tests/test_hostile_cli_regressions.py``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from iot_remote_access.core.topics import THING_NAME_RULE
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.cli_runner import run_cli
from tests.support.factory_certificates import factory_certificate
from tests.support.hostile_cli import (
    CONTROL_AND_BIDI,
    HostileFile,
    assert_refused,
    bounded,
    fuzz_settings,
    hostile_file,
    run_bounded,
)
from tests.support.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


def _example(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


GCP_BASE = _example("gcp-settings.yaml")
AZURE_BASE = _example("azure-settings.yaml")


def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        shutil.copy(EXAMPLES / "azure-fleet-ca.pem", folder)
        yield folder


def _write(folder: Path, hostile: HostileFile, suffix: str) -> Path:
    path = folder / f"settings{suffix}"
    path.write_bytes(hostile.data)
    return path


@pytest.fixture(scope="module", autouse=True)
def _warm_up() -> None:
    """Import what each command imports (jsii starts Node) before the bounds are measured."""
    for folder in _folder():
        empty = folder / "empty.json"
        empty.write_text("{}")
        for command, (_, args) in SETTINGS_COMMANDS.items():
            out = ["--out", str(folder / "out")] if command == "gcp manifests" else []
            run_cli(*args, "--settings", str(empty), *out)
        run_cli("bridge", "run")
        run_cli("lint", str(empty))


# -- settings files, through every command that reads one ----------------------------

SETTINGS_COMMANDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "gcp plan": (GCP_BASE, ["gcp", "plan", "--project", "my-fleet-project"]),
    "gcp deploy": (GCP_BASE, ["gcp", "deploy", "--project", "my-fleet-project"]),
    "gcp manifests": (GCP_BASE, ["gcp", "manifests"]),
    "gcp device-realm": (GCP_BASE, ["gcp", "device-realm", "--things", "-"]),
    "azure plan": (
        AZURE_BASE,
        ["azure", "plan", "--subscription", SUBSCRIPTION, "--resource-group", "rg"],
    ),
    "azure deploy": (
        AZURE_BASE,
        ["azure", "deploy", "--subscription", SUBSCRIPTION, "--resource-group", "rg"],
    ),
    # Both need a certificates section, which the base lacks: refused before any network call.
    "azure rotate": (AZURE_BASE, ["azure", "rotate", "--ca-key-file", "group-ca.key"]),
    "certs plan --cloud azure": (AZURE_BASE, ["certs", "plan", "--cloud", "azure"]),
    # The base rotates on no cloud (no certificates, no certificateAuthority): refused too.
    "certs simulate": (GCP_BASE, ["certs", "simulate", "--devices", "10"]),
}


@pytest.mark.parametrize("command", sorted(SETTINGS_COMMANDS))
def test_hostile_settings_file_is_refused_in_one_line(command: str) -> None:
    base, args = SETTINGS_COMMANDS[command]

    @fuzz_settings
    @given(
        hostile=hostile_file(valid_base=base), suffix=st.sampled_from([".json", ".yaml", ".yml"])
    )
    def check(hostile: HostileFile, suffix: str) -> None:
        for folder in _folder():
            path = _write(folder, hostile, suffix)
            out = folder / "out"
            extra = ["--out", str(out)] if command == "gcp manifests" else []
            result = run_bounded(*args, "--settings", str(path), *extra)
            assert_refused(result, path.name)
            assert not out.exists(), "gcp manifests wrote files for refused settings"

    check()


@fuzz_settings
@given(hostile=hostile_file())
def test_hostile_thing_list_to_device_realm_is_exit_2_or_a_realm(hostile: HostileFile) -> None:
    """Random bytes as ``--things``: refused in one line naming the file, or (names and
    comments by chance) a realm; never a crash."""
    for folder in _folder():
        settings = folder / "settings.yaml"
        settings.write_text(yaml.safe_dump(GCP_BASE))
        things = _write(folder, hostile, ".txt")
        result = run_bounded(
            "gcp", "device-realm", "--settings", str(settings), "--things", str(things)
        )
        if hostile.refused or result.code == 2:
            assert_refused(result, things.name)
        else:
            assert result.code == 0 and "kind: ConfigMap" in result.stdout, result.stderr


# -- lint ----------------------------------------------------------------------------


@fuzz_settings
@given(hostile=hostile_file(), suffix=st.sampled_from([".json", ".yaml", ".template", ""]))
def test_hostile_template_to_lint_is_exit_2_not_a_crash(hostile: HostileFile, suffix: str) -> None:
    for folder in _folder():
        path = _write(folder, hostile, suffix)
        result = run_bounded("lint", str(path))
        if hostile.refused or result.code == 2:
            assert_refused(result, path.name)
        else:  # random text can be a (clean or wildcard) policy: never a crash
            assert result.code in (0, 1) and "Traceback" not in result.stderr


@fuzz_settings
@given(hostile=hostile_file(), suffix=st.sampled_from([".json", ".yaml", ".acl", ".xml", ""]))
def test_hostile_document_to_reach_is_exit_2_not_a_crash(hostile: HostileFile, suffix: str) -> None:
    for folder in _folder():
        path = _write(folder, hostile, suffix)
        result = run_bounded("reach", str(path))
        if hostile.refused or result.code == 2:
            assert_refused(result, path.name)
        else:  # random text can be a policy or an ACL: never a crash
            assert result.code in (0, 1) and "Traceback" not in result.stderr


# -- certs plan --inventory ------------------------------------------------------------


@fuzz_settings
@given(hostile=hostile_file(), suffix=st.sampled_from([".json", ".csv"]))
def test_hostile_inventory_is_refused_in_one_line(hostile: HostileFile, suffix: str) -> None:
    for folder in _folder():
        path = folder / f"inventory{suffix}"
        path.write_bytes(hostile.data)
        result = run_bounded("certs", "plan", "--inventory", str(path), "--format", "json")
        # As CSV, a nested or duplicate-key document is a header line and no devices.
        unreadable = hostile.kind in ("binary", "invalid-utf8", "surrogate")
        if (hostile.refused and (suffix == ".json" or unreadable)) or result.code == 2:
            assert_refused(result, path.name)
        else:  # a CSV without a header is an empty inventory: an empty plan
            assert result.code == 0 and "Traceback" not in result.stderr


# -- inventory enroll --cloud gcp ----------------------------------------------------------


@fuzz_settings
@given(hostile=hostile_file())
def test_hostile_certificate_file_to_inventory_enroll_is_refused(hostile: HostileFile) -> None:
    """Every certificate is checked before Firestore is reached: no emulator, no credentials."""
    for folder in _folder():
        path = folder / "devices.pem"
        path.write_bytes(hostile.data)
        settings = str(EXAMPLES / "gcp-settings.yaml")
        result = run_bounded(
            "inventory", "enroll", "--cloud", "gcp", "--settings", settings, str(path)
        )
        assert_refused(result, path.name)  # no PEM certificate in any of them


@fuzz_settings
@given(names=st.lists(st.text(min_size=0, max_size=300), min_size=0, max_size=3))
def test_hostile_subject_cn_to_inventory_enroll_is_refused(names: list[str]) -> None:
    assume(len(names) != 1 or not re.fullmatch(THING_NAME_RULE, names[0]))
    for folder in _folder():
        path = folder / "device.pem"
        path.write_text(factory_certificate(*names)[0])
        settings = str(EXAMPLES / "gcp-settings.yaml")
        result = run_bounded(
            "inventory", "enroll", "--cloud", "gcp", "--settings", settings, str(path)
        )
        line = assert_refused(result, path.name)
        assert "subject CN" in line or "subject:" in line, line


inventory_row = st.fixed_dictionaries(
    {
        "thing": st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text())),
        "certificateId": st.one_of(st.text(max_size=20), st.integers(), st.none()),
        "notAfter": st.one_of(
            st.just("2027-01-01T00:00:00+00:00"),
            st.text(max_size=60),
            st.floats(),
            st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        ),
        "rotationState": st.one_of(st.none(), st.text(max_size=20), st.lists(st.integers())),
        "attempts": st.one_of(st.none(), st.text(max_size=20), st.floats(), st.integers()),
    }
)


@fuzz_settings
@given(rows=st.lists(inventory_row, min_size=1, max_size=5))
def test_wrong_types_in_inventory_rows_are_refused(rows: list[dict[str, Any]]) -> None:
    for folder in _folder():
        path = folder / "inventory.json"
        path.write_text(json.dumps(rows))
        result = run_bounded("certs", "plan", "--inventory", str(path), "--format", "json")
        if result.code != 0:
            assert_refused(result, path.name)


# -- options and arguments -----------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=CONTROL_AND_BIDI.replace("\x00", "") + "a-9", min_size=1, max_size=50),
    st.integers().map(str),
    st.just("9" * 5000),
    st.just("\u202e" + "a" * 3000),
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
).filter(lambda text: "\x00" not in text)


@fuzz_settings
@given(option=st.sampled_from(["--devices", "--window-days", "--base-days"]), value=hostile_text)
def test_certs_simulate_options(option: str, value: str) -> None:
    # A valid large --devices is a long, correct run: not what this test is about.
    digits = value.strip()
    assume(option != "--devices" or not digits.isdigit() or len(digits) > 8)
    devices = [] if option == "--devices" else ["--devices", "10"]
    result = run_bounded("certs", "simulate", "--format", "json", *devices, option, value)
    if result.code != 0:
        assert_refused(result, option, "'--devices'", "--window-days", "--base-days")


@fuzz_settings
@given(
    option=st.sampled_from(["--now", "--lead-days", "--hourly-budget", "--hours"]),
    value=hostile_text,
)
def test_certs_plan_options(option: str, value: str) -> None:
    for folder in _folder():
        path = folder / "inventory.csv"
        path.write_text("thing,certificateId,notAfter\n")
        result = run_bounded("certs", "plan", "--inventory", str(path), option, value)
        if result.code != 0:
            assert_refused(result, option, option.removeprefix("--").replace("-", "_"))


@fuzz_settings
@given(project=hostile_text)
def test_gcp_project_option(project: str) -> None:
    result = run_bounded(
        "gcp", "plan", "--settings", str(EXAMPLES / "gcp-settings.yaml"), "--project", project
    )
    if result.code == 1:  # a valid id ('location') goes on to ask for credentials
        assert len(result.stderr.splitlines()) == 1 and "credentials" in result.stderr
    else:
        assert_refused(result, "--project", "project")


@fuzz_settings
@given(option=st.sampled_from(["--subscription", "--resource-group"]), value=hostile_text)
def test_azure_subscription_and_group_options(option: str, value: str) -> None:
    values = {"--subscription": SUBSCRIPTION, "--resource-group": "rg", option: value}
    args = [item for pair in values.items() for item in pair]
    result = run_bounded(
        "azure", "plan", "--settings", str(EXAMPLES / "azure-settings.yaml"), *args
    )
    if result.code != 1:  # a value that happens to be valid goes on to ask for credentials
        assert_refused(result, option)


# -- settings from cdk.json context (in-process: FleetSettings.parse) ----------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50), st.just("x" * 3000)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
KNOWN_KEYS = [
    "telemetryTopic",
    "thingNamePattern",
    "tunneling",
    "certificates",
    "monitoring",
    "tunnelAlarms",
    "gcp",
    "azure",
    "hivemq",
]


@fuzz_settings
@given(
    context=st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20)), json_values, max_size=4
    )
)
def test_cdk_context_is_settings_or_one_short_line_per_problem(context: dict[str, Any]) -> None:
    with bounded():
        try:
            FleetSettings.parse(context)
        except SettingsError as error:
            lines = str(error).splitlines()
            assert 1 <= len(lines) <= 6
            assert all(line.startswith("iot-remote-access") for line in lines)
            assert all(len(line) <= 650 and line.isprintable() for line in lines), lines


@fuzz_settings
@given(depth=st.integers(33, 5000), fan=st.integers(1, 3))
def test_deep_or_shared_cdk_context_is_refused(depth: int, fan: int) -> None:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] * fan if fan > 1 else {"a": value}
    with bounded(), pytest.raises(SettingsError, match=r"nested deeper than 32|more than 100000"):
        FleetSettings.parse({"tunneling": value})


# -- the bridge's BRIDGE_* variables ---------------------------------------------------

BRIDGE_VARIABLES = [
    "BRIDGE_PROJECT",
    "BRIDGE_MQTT_HOST",
    "BRIDGE_MQTT_PORT",
    "BRIDGE_MQTT_CA_FILE",
    "BRIDGE_MQTT_CLIENT_ID",
    "BRIDGE_MAX_INFLIGHT",
    "BRIDGE_DRAIN_TIMEOUT_SECONDS",
    "BRIDGE_THING_NAME_PATTERN",
    "BRIDGE_LOG_LEVEL",
    "BRIDGE_TELEMETRY_TOPIC",
]
env_text = st.one_of(
    hostile_text, st.just("\udcff\udcfe"), st.just("1" * 100_000), st.just("nan")
).filter(lambda text: "\x00" not in text)


@fuzz_settings
@given(values=st.dictionaries(st.sampled_from(BRIDGE_VARIABLES), env_text, min_size=1))
def test_bridge_environment_is_refused_in_one_line(
    values: dict[str, str],
) -> None:
    pytest.importorskip("pydantic_settings")
    with pytest.MonkeyPatch.context() as patch:
        for name in [*BRIDGE_VARIABLES, "BRIDGE_MQTT_KEY_FILE"]:
            patch.delenv(name, raising=False)
        # BRIDGE_MQTT_KEY_FILE is never set: the settings are never usable.
        patch.setenv("BRIDGE_MQTT_CERT_FILE", "/nonexistent/cert.pem")
        for name, value in values.items():
            patch.setenv(name, value)
        result = run_bounded("bridge", "run")
    assert_refused(result, "BRIDGE_")
