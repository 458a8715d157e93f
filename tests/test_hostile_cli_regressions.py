"""Regression tests for issue 14's CLI and settings defects 6, 7, 8 and 9.

Each was reproduced against the code before the fix (see docs/hostile-cli.md):
a traceback and exit 1, a 2.8 MB error line, a run past 30 s, a string
accepted as a boolean. Representative cases run the installed console script
in a subprocess, as a user or a CI job would; the many run in-process.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iot_remote_access.core.stagger import (
    MemoryLedger,
    StaggerPolicy,
    assign_offset,
    simulate,
)
from iot_remote_access.settings import FleetSettings, SettingsError
from tests.support.cli_runner import run_cli
from tests.support.hostile_cli import CONSOLE_SCRIPT, assert_refused, run_script
from tests.support.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
GCP = ["gcp", "plan", "--project", "my-project-1", "--settings"]
#: The issue's 249-byte bomb: nine levels of nine aliases (387,420,489 leaves).
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)

# -- 6: malformed, non-UTF-8 and deep settings files; deep lint input; bad inventories --

SETTINGS_FILES = {
    "malformed.yaml": b"gcp: [\n  projectNumber: 1\n",
    "latin1.yaml": "gcp:\n  projectNumber: '\xe9t\xe9'\n".encode("latin-1"),
    "deep.json": b'{"gcp": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep.yaml": b"gcp: " + b"[" * 100_000 + b"\n",
    "binary.yaml": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("name", sorted(SETTINGS_FILES))
@pytest.mark.parametrize(
    "command",
    [
        GCP,
        ["gcp", "deploy", "--project", "my-project-1", "--settings"],
        ["gcp", "manifests", "--out", "out", "--settings"],
        [
            "azure",
            "plan",
            "--subscription",
            "00000000-0000-0000-0000-000000000000",
            "--resource-group",
            "rg",
            "--settings",
        ],
    ],
    ids=["gcp plan", "gcp deploy", "gcp manifests", "azure plan"],
)
def test_unreadable_settings_file_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(SETTINGS_FILES[name])
    assert_refused(run_cli(*command, name), name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("deep.json", b"[" * 50_000 + b"]" * 50_000, "nested deeper than 64"),
        ("deep.yaml", b"Statement:\n" + b"- " * 5_000 + b"x\n", "nested deeper than 64"),
        ("deep-flow.yaml", b"Statement: " + b"[" * 50_000, "nested deeper than 64"),
        ("policy.json", b"\xff\xfe{}", "not UTF-8"),
        ("dup.json", b'{"Statement":[{"Effect":"Deny","Effect":"Allow"}]}', "duplicate key"),
    ],
)
def test_lint_unreadable_input_is_exit_2_not_findings(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    (tmp_path / name).write_bytes(content)
    line = assert_refused(run_cli("lint", str(tmp_path / name)), name)
    assert problem in line


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("inventory.csv", b"thing,certificateId\x00,notAfter\n\x00\x01\x02", "binary"),
        ("inventory.csv", b"thing,certificateId,notAfter\n\xff\xfe,x,y\n", "not UTF-8"),
        ("inventory.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper than 4"),
        ("inventory.json", bytes(range(256)), "binary"),
        ("inventory.csv", b'thing,certificateId,notAfter\n"' + b"a" * 200_000 + b'",x,y\n', "CSV"),
        ("inventory.json", b'[{"thing":[1],"certificateId":"c","notAfter":"x"}]', "thing"),
        (
            "inventory.json",
            b'[{"thing":"t","certificateId":"c","notAfter":"2027-01-01T00:00:00+00:00",'
            b'"attempts":1e999}]',
            "attempts",
        ),
        (
            "inventory.json",
            b'[{"thing":"t","certificateId":"c","notAfter":"9999-12-31T00:00:00+00:00"}]',
            "notAfter '9999-12-31T00:00:00+00:00' is out of range",
        ),
    ],
)
def test_bad_inventory_file_is_one_line_exit_2(
    tmp_path: Path, name: str, content: bytes, problem: str
) -> None:
    (tmp_path / name).write_bytes(content)
    line = assert_refused(run_cli("certs", "plan", "--inventory", str(tmp_path / name)), name)
    assert problem in line


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--hours", "100000000000000000000", "--hours: 100000000000000000000; allowed: 1..87840"),
        (
            "--now",
            "9999-12-31T23:00:00+00:00",
            "--now: '9999-12-31T23:00:00+00:00' is out of range",
        ),
        (
            "--now",
            "0001-01-01T00:00:00+00:00",
            "--now: '0001-01-01T00:00:00+00:00' is out of range",
        ),
    ],
)
def test_plan_options_that_overflowed_are_exit_2(
    tmp_path: Path, option: str, value: str, problem: str
) -> None:
    # Found by the fuzz tests: each was an OverflowError traceback (exit 1).
    (tmp_path / "inv.csv").write_text(
        "thing,certificateId,notAfter\nt,c,2027-01-01T00:00:00+00:00\n"
    )
    result = run_cli("certs", "plan", "--inventory", str(tmp_path / "inv.csv"), option, value)
    assert problem in assert_refused(result, option)


def test_console_script_deep_json_to_lint_and_binary_inventory(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (tmp_path / "inv.csv").write_bytes(bytes(range(256)))
    lint, _ = run_script("lint", "deep.json", cwd=tmp_path)
    assert_refused(lint, "deep.json")
    plan, _ = run_script("certs", "plan", "--inventory", "inv.csv", cwd=tmp_path)
    assert_refused(plan, "inv.csv")


# -- 7: limits on settings files; short excerpts of values ------------------------------


def test_alias_bomb_is_refused_fast_in_one_short_line(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 400
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    started = time.monotonic()
    result, peak_mb = run_script(*GCP, "bomb.yaml", cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    line = assert_refused(result, "bomb.yaml")
    assert "YAML alias at line 2" in line
    assert len(result.stderr) < 300
    assert elapsed < 30 and peak_mb < 500, (elapsed, peak_mb)


def test_small_alias_bomb_in_lint_is_bounded(tmp_path: Path) -> None:
    # lint allows aliases (YAML templates may use them) but counts what they expand to.
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    line = assert_refused(run_cli("lint", str(tmp_path / "bomb.yaml")), "bomb.yaml")
    assert "more than 2000000 values" in line


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("gcp: {}\ngcp: {}\n", "duplicate key 'gcp' at line 2"),
        ('{"tunneling": {"enabled": true, "enabled": false}}', "duplicate key 'enabled'"),
        ("x: " + "a" * (1024 * 1024 + 1), "larger than 1048576 bytes"),
        ("1: a\n", "key 1 at line 1 is not a string"),
    ],
)
def test_settings_file_limits(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / ("s.json" if content.startswith("{") else "s.yaml")
    path.write_text(content)
    with pytest.raises(SettingsError) as raised:
        FleetSettings.from_file(path)
    assert problem in str(raised.value)


def test_huge_value_is_quoted_as_a_short_excerpt(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({"telemetryTopic": "\u202e" + "x" * 500_000}))
    line = assert_refused(run_cli(*GCP, str(tmp_path / "s.json")), "s.json")
    # The bidi override is quoted escaped, never as the character itself.
    assert len(line) < 400 and "\u202e" not in line and "'\\u202exxx" in line


def test_many_problems_are_cut_to_a_few(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps({f"unknown{i}": i for i in range(5000)}))
    line = assert_refused(run_cli(*GCP, str(tmp_path / "s.json")), "s.json")
    assert "5000 problems, the first 5:" in line and len(line) <= 1100


# -- 8: one strict rule for every section ------------------------------------------------

STRINGS_FOR_SCALARS = [
    ({"tunneling": {"enabled": "no"}}, "tunneling.enabled", "'no' is a string"),
    ({"certificates": {"baseValidityDays": "365"}}, "certificates.baseValidityDays", "'365'"),
    ({"monitoring": {"siemExport": "false"}}, "monitoring.siemExport", "'false'"),
    ({"tunnelAlarms": {"enabled": "yes"}}, "tunnelAlarms.enabled", "'yes'"),
    ({"tunnelAlarms": {"maxOpenHours": "4"}}, "tunnelAlarms.maxOpenHours", "'4'"),
    ({"certificates": {"maxAttempts": 3.0}}, "certificates.maxAttempts", "3.0"),
    ({"tunneling": {"operatorRole": 1}}, "tunneling.operatorRole", "1 is a number"),
    (
        {
            "gcp": {
                "projectNumber": "1",
                "bridge": {"serviceAccount": "a@b.iam.gserviceaccount.com"},
                "pubsub": {"ackDeadlineSeconds": "30"},
            }
        },
        "gcp.pubsub.ackDeadlineSeconds",
        "'30'",
    ),
]


@pytest.mark.parametrize(("raw", "field", "value"), STRINGS_FOR_SCALARS)
def test_strings_are_not_booleans_or_numbers_in_any_section(
    raw: dict[str, object], field: str, value: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        FleetSettings.parse(raw)
    line = next(line for line in str(raised.value).splitlines() if field in line)
    assert value in line and "allowed:" in line


def test_console_script_refuses_strings_for_scalars_in_a_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        'tunneling:\n  enabled: "no"\ncertificates:\n  baseValidityDays: "365"\n'
    )
    result, _ = run_script(*GCP, "s.yaml", cwd=tmp_path)
    line = assert_refused(result, "s.yaml")
    assert "s.yaml.tunneling.enabled: 'no' is a string; allowed: true or false" in line
    assert "certificates.baseValidityDays: '365' is a string; allowed: an integer" in line


def test_lists_and_paths_from_files_still_validate(tmp_path: Path) -> None:
    # JSON has no tuples and no paths: strict mode must not refuse them from files.
    settings = FleetSettings.from_file(EXAMPLES / "azure-settings.yaml")
    assert settings.azure is not None and settings.azure.ca_certificate is not None
    assert isinstance(settings.azure.ca_certificate.file, Path)
    assert FleetSettings.parse({"tunneling": {"allowedServices": ["SSH"]}}).tunneling


def test_cdk_app_refuses_a_string_boolean_in_one_line(tmp_path: Path) -> None:
    context = {"iot-remote-access": {"tunneling": {"enabled": "no"}, "bogus": 1}}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and "tunneling.enabled: 'no' is a string" in lines[0]


# -- 9: certs simulate at the documented maximum ----------------------------------------


def test_fast_simulation_equals_the_ledger_placement() -> None:
    for policy in (StaggerPolicy(), StaggerPolicy(base_days=30, window_days=7)):
        devices = 20_000
        result = simulate(devices, policy)
        ledger = MemoryLedger(policy.window_days)
        hashed: dict[int, int] = {}
        staggered: dict[int, int] = {}
        for i in range(devices):
            name = f"device-{i:06d}"
            day = policy.base_days + policy.hashed_offset(name)
            hashed[day] = hashed.get(day, 0) + 1
            day = policy.base_days + assign_offset(policy, ledger, "simulation", name)
            staggered[day] = staggered.get(day, 0) + 1
        assert result.hashed == dict(sorted(hashed.items()))
        assert result.staggered == dict(sorted(staggered.items()))


def test_simulate_reports_progress_in_blocks() -> None:
    seen: list[int] = []
    simulate(250_000, StaggerPolicy(), progress=seen.append)
    assert seen == [100_000, 200_000, 250_000]


def test_progress_is_drawn_on_a_terminal_and_not_in_a_pipe(tmp_path: Path) -> None:
    args = [CONSOLE_SCRIPT, "certs", "simulate", "--devices", "300000", "--format", "json"]
    piped = subprocess.run(args, capture_output=True, timeout=300, check=True)
    assert piped.stderr == b""
    primary, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=secondary, env=env) as process:
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            drawn += chunk
        assert process.wait(timeout=300) == 0
    os.close(primary)
    assert b"simulating" in drawn and b"/300000" in drawn


def test_bridge_file_variable_the_system_cannot_look_up_is_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the fuzz tests: an OSError (file name too long) traceback, exit 1.
    monkeypatch.setenv("BRIDGE_MQTT_CA_FILE", "\u202e" + "a" * 5000)
    line = assert_refused(run_cli("bridge", "run"), "BRIDGE_")
    assert "File name too long" in line and "\u202e" not in line
