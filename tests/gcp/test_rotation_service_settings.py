"""The rotation service's entry point refuses bad settings before it connects anywhere:
exit 2, one line per problem naming the variable, the value (shortened) and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

GOOD = {
    "ROTATION_PROJECT": "my-fleet-project",
    "ROTATION_CA_POOL": "projects/my-fleet-project/locations/europe-west1/caPools/iot-devices",
}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    return subprocess.run(
        [sys.executable, "-m", "iot_remote_access.pubsub.rotation", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["ROTATION_PROJECT: not set; required"]),
        (
            {**GOOD, "ROTATION_HOURLY_BUDGET": "20000"},
            ["ROTATION_HOURLY_BUDGET 20000 is above 12600 (half an hour of ROTATION_CA_CREATE_QPS 7)"],
        ),
        ({**GOOD, "ROTATION_LEAD_DAYS": "7"}, ["ROTATION_LEAD_DAYS: '7': Input should be greater than or equal to 30"]),
        ({**GOOD, "ROTATION_CA_POOL": "x" * 5000}, ["ROTATION_CA_POOL: 'xxxxxxxx"]),
        ({**GOOD, "ROTATION_HOURLY_BUDGT": "5"}, ["unknown variable(s) ROTATION_HOURLY_BUDGT (did you mean ROTATION_HOURLY_BUDGET?)"]),
        ({**GOOD, "ROTATION_ISSUER": "no.such.module"}, ["ROTATION_ISSUER: 'no.such.module' cannot be imported"]),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_naming_the_variable(env: dict[str, str], expected: list[str]) -> None:
    result = _run("serve", **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith("error: invalid rotation settings: ") and start in line, line
        assert len(line) < 400


def test_an_unknown_mode_exits_2() -> None:
    result = _run("rotate-everything", **GOOD)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: mode: 'rotate-everything'; allowed: one of serve, plan, dispatch"
    )
