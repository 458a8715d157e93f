"""`iot-remote-access azure plan|deploy` against the local ARM stand-in (not Azure).

The plan/deploy tests run the installed command in a subprocess with the real
DefaultAzureCredential, which gets a fake token from the stand-in's
App Service managed-identity endpoint; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_remote_access.cli import main
from tests.support.azure_arm_standin import IDENTITY_HEADER, ArmStandIn
from tests.support.azure_helpers import GROUP, SUBSCRIPTION, make_ca

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "azure-settings.yaml"
COMMAND = str(Path(sys.executable).parent / "iot-remote-access")
JSII_CACHE = str(Path.home() / ".cache" / "aws" / "jsii" / "package-cache")


@pytest.fixture
def standin(tmp_path: Path) -> Any:
    # As ARM does, long-running operations say when to poll again.
    with ArmStandIn(tmp_path, lro_polls=0, lro_retry_after=1) as server:
        server.add_resource_group(SUBSCRIPTION, GROUP)
        yield server


def azure_env(standin: ArmStandIn | None, home: Path) -> dict[str, str]:
    """A machine with no Azure sign-in (empty home, no az CLI profile), plus the stand-in's
    identity endpoint: DefaultAzureCredential can only get the stand-in's fake token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    env.update(NO_PROXY="127.0.0.1", HOME=str(home), AZURE_CONFIG_DIR=str(home / ".azure"))
    # jsii keeps its unpacked JavaScript under HOME; a new HOME would unpack aws-cdk-lib again.
    env.setdefault("JSII_RUNTIME_PACKAGE_CACHE_ROOT", JSII_CACHE)
    if standin is not None:
        env.update(
            IDENTITY_ENDPOINT=standin.identity_endpoint,
            IDENTITY_HEADER=IDENTITY_HEADER,
            REQUESTS_CA_BUNDLE=str(standin.ca_bundle),
            IOT_REMOTE_ACCESS_ARM_ENDPOINT=standin.endpoint,
        )
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # our own console script
        [COMMAND, "azure", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def target(settings: Path, group: str = GROUP) -> list[str]:
    return ["--settings", str(settings), "--subscription", SUBSCRIPTION, "--resource-group", group]


def test_plan_from_example_settings_works_offline_against_standin(
    standin: ArmStandIn, tmp_path: Path
) -> None:
    result = run(["plan", *target(EXAMPLE)], azure_env(standin, tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "IoT hub example-fleet-hub: create" in lines
    assert "  + properties.disableDeviceSAS: true" in lines
    assert '  + properties.minTlsVersion: "1.2"' in lines
    assert "IoT hub CA certificate fleet-ca: create, then prove possession of the CA key" in lines
    assert "  note: Device Streams (preview): endpoints known after deploy" in lines
    assert lines[-1] == "Plan: 9 to create, 0 to change, 0 unchanged."
    assert standin.writes() == []
    assert standin.tokens_issued >= 1  # DefaultAzureCredential, via the managed-identity endpoint


def test_deploy_then_deploy_again_changes_nothing_standin(
    standin: ArmStandIn, tmp_path: Path
) -> None:
    ca = make_ca(tmp_path / "ca")
    settings = yaml.safe_load(EXAMPLE.read_text())
    settings["azure"]["caCertificate"]["file"] = str(ca.certificate_file)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    env = azure_env(standin, tmp_path)

    first = run(["deploy", *target(settings_file), "--ca-key-file", str(ca.key_file)], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "Deployed: 9 created, 0 changed, 0 unchanged."
    assert "creating IoT hub example-fleet-hub: done in" in first.stderr  # progress of the LRO
    writes = len(standin.writes())

    second = run(["deploy", *target(settings_file)], env)  # no key needed: nothing to prove
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "No changes: all 9 resources are up to date."
    assert len(standin.writes()) == writes
    plan = run(["plan", *target(settings_file)], env)
    assert plan.stdout.splitlines()[-1] == "Plan: 0 to create, 0 to change, 9 unchanged."
    assert ca.key_pem.splitlines()[2] not in first.stdout + first.stderr


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["azure", *args])
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def _use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_no_credentials_is_one_line_on_how_to_sign_in(
    standin: ArmStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    env = azure_env(None, tmp_path)
    env["IOT_REMOTE_ACCESS_ARM_ENDPOINT"] = standin.endpoint
    _use_env(monkeypatch, env)
    code, out, err = _main(["plan", *target(EXAMPLE)], capsys)
    assert code == 1
    assert err == (
        "error: no usable Azure credentials: sign in with 'az login' (or set AZURE_TENANT_ID, "
        "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or run with a managed identity), then run again\n"
    )
    assert "Traceback" not in out + err
    assert standin.requests == []  # no token, no request


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"iotHub": {"name": "example-fleet-hub", "sku": "S9"}},
            r"error: invalid settings: .*azure-settings.yaml.azure.iotHub.sku: 'S9': "
            r"Input should be 'F1', 'B1', 'B2', 'B3', 'S1', 'S2' or 'S3'",
        ),
        (
            {"location": "westeurope"},
            r"azure.deviceStreams: Device Streams \(preview\) is not available in 'westeurope'; "
            r"allowed regions: Central US \(centralus\), Central US EUAP \(centraluseuap\), "
            r"North Europe \(northeurope\), Southeast Asia \(southeastasia\)",
        ),
        (
            {"caCertificate": {"file": "nowhere.pem"}},
            r"error: azure.caCertificate.file: cannot read '.*nowhere.pem' "
            r"\(No such file or directory\)",
        ),
        (
            {
                "iotHub": {
                    "name": "example-fleet-hub",
                    "ipFilterRules": [{"name": "x", "action": "Accept", "ipMask": "10.0.0.1/8"}],
                }
            },
            r"azure.iotHub.ipFilterRules.0.ipMask: '10.0.0.1/8' is not an IPv4 address or CIDR "
            r"range",
        ),
    ],
    ids=["sku", "streams-region", "ca-file", "ip-mask"],
)
def test_bad_settings_exit_2_before_any_call_standin(
    standin: ArmStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    message: str,
) -> None:
    settings = yaml.safe_load(EXAMPLE.read_text())
    settings["azure"].update(change)
    settings_file = tmp_path / "azure-settings.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    shutil.copy(EXAMPLE.parent / "azure-fleet-ca.pem", tmp_path)
    _use_env(monkeypatch, azure_env(standin, tmp_path))
    code, _, err = _main(["plan", *target(settings_file)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert standin.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--subscription", "not-a-guid"],
            r"error: --subscription: 'not-a-guid' is not a subscription id",
        ),
        (
            ["--resource-group", "bad/group"],
            r"error: --resource-group: 'bad/group' is not a resource group name",
        ),
    ],
)
def test_bad_options_exit_2_before_any_call_standin(
    standin: ArmStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
    tmp_path: Path,
) -> None:
    _use_env(monkeypatch, azure_env(standin, tmp_path))
    base = target(EXAMPLE)
    for option, value in zip(args[::2], args[1::2], strict=True):
        base[base.index(option) + 1] = value
    code, _, err = _main(["plan", *base], capsys)
    assert code == 2
    assert re.match(message, err), err
    assert standin.requests == []


def test_wrong_ca_key_exit_2_before_any_call_standin(
    standin: ArmStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = make_ca(tmp_path / "other")
    _use_env(monkeypatch, azure_env(standin, tmp_path))
    code, _, err = _main(["deploy", *target(EXAMPLE), "--ca-key-file", str(other.key_file)], capsys)
    assert code == 2
    assert err.startswith("error: --ca-key-file: the key in ")
    assert (
        "does not belong to the CA certificate "
        "'CN=Example Fleet Device CA (replace me),O=Example Fleet'" in err
    )
    assert standin.requests == []


def test_azure_error_is_one_line_with_resource_and_code_standin(
    standin: ArmStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _use_env(monkeypatch, azure_env(standin, tmp_path))
    code, _, err = _main(["plan", *target(EXAMPLE, group="missing-group")], capsys)
    assert code == 1
    assert err.startswith(
        "error: IoT hub example-fleet-hub: Azure error ResourceGroupNotFound, HTTP 404: "
        "Resource group 'missing-group' could not be found."
    )
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_settings_without_azure_section_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_file = tmp_path / "settings.json"
    settings_file.write_text('{"telemetryTopic": "dt/{thing}/telemetry"}')
    _use_env(monkeypatch, azure_env(None, tmp_path))
    code, _, err = _main(["plan", *target(settings_file)], capsys)
    assert code == 2
    assert err == (
        f"error: {settings_file}: no 'azure' section; allowed: azure with location and iotHub "
        "(see examples/azure-settings.yaml)\n"
    )


def test_ca_key_file_and_secret_together_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_env(monkeypatch, azure_env(None, tmp_path))
    args = ["--ca-key-file", "k.pem", "--ca-key-secret", "https://v.vault.azure.net/secrets/k"]
    code, _, err = _main(["deploy", *target(EXAMPLE), *args], capsys)
    assert code == 2
    assert err == (
        "error: --ca-key-file and --ca-key-secret: give one; allowed: either, or neither\n"
    )
