"""``gcp device-config``: the device agent's teleport.yaml, node name = thing name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cli_runner import run_cli
from tests.support.teleport import access_raw


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": access_raw()}))
    return path


def node_matches(node_labels: dict[str, list[str]], labels: dict[str, str]) -> bool:
    """Teleport's rule for ``node_labels``: every key must match one of its values."""
    return all(labels.get(key) in values for key, values in node_labels.items())


def test_the_config_names_the_node_after_the_thing_and_matches_the_access_role(
    settings_file: Path,
) -> None:
    result = run_cli(
        "gcp", "device-config", "--settings", str(settings_file),
        "--thing", "sensor-000001", "--thing-group", "field-gateways", "--label", "site=berlin",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["teleport"]["nodename"] == "sensor-000001"  # = the MQTT identity
    assert config["teleport"]["proxy_server"] == "teleport.example.com:443"  # dials out only
    assert config["teleport"]["join_params"]["method"] == "token"
    assert config["auth_service"] == {"enabled": False}
    assert config["proxy_service"] == {"enabled": False}
    labels = config["ssh_service"]["labels"]
    resources = run_cli(
        "gcp",
        "manifests",
        "--settings",
        str(settings_file),
        "--out",
        str(settings_file.parent / "out"),
    )
    assert resources.code == 0, resources.stderr
    roles = list(
        yaml.safe_load_all((settings_file.parent / "out" / "teleport-resources.yaml").read_text())
    )
    (access,) = [r for r in roles if r and r["metadata"]["name"] == "iot-device-access"]
    assert node_matches(access["spec"]["allow"]["node_labels"], labels)
    assert not node_matches(access["spec"]["allow"]["node_labels"], {**labels, "site": "paris"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--thing", "bad name"], "error: --thing: 'bad name' is not a valid thing name"),
        (["--thing", "x" * 100_000], "error: --thing: 'xxxx"),
        (
            ["--thing", "s1", "--thing-group", "*"],
            "error: --thing-group: '*' is not a thing group name",
        ),
        (["--thing", "s1", "--label", "site=*"], "error: label: 'site=*' is not allowed"),
        (["--thing", "s1", "--label", "noequals"], "error: --label: 'noequals' is not KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(
    settings_file: Path, args: list[str], message: str
) -> None:
    result = run_cli("gcp", "device-config", "--settings", str(settings_file), *args)
    assert result.code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message) and len(lines[0]) < 300, lines


def test_without_an_access_proxy_section_it_says_so(tmp_path: Path) -> None:
    raw = access_raw()
    del raw["gcp"]["accessProxy"]
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"iot-remote-access": raw}))
    result = run_cli("gcp", "device-config", "--settings", str(path), "--thing", "s1")
    assert result.code == 2
    assert "gcp.accessProxy: missing" in result.stderr
