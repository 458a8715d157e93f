"""The install-ends smoke script (``tests/support/install_smoke.py``) names the end that failed.

The script itself runs in the two fresh venvs of ``scripts/dev test-ends``; here its
reporting is checked in the project's venv (cdk-nag 3): one ``ok`` line per passing
check, and one ``FAILED [<end> end] <check>: ...`` line and exit status 1 at the first
failure, so a red CI says which end and which check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import install_smoke


def _fail(work: Path) -> str:
    raise AssertionError("cdk synth failed: boom")


def test_a_failed_check_names_the_end_and_the_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        install_smoke,
        "CHECKS",
        {"cdk-nag version": install_smoke.check_nag_version, "cdk CLI synth": _fail},
    )
    assert install_smoke.main("lowest") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok [lowest end] cdk-nag version (")
    assert lines[0].endswith(": 1 AwsSolutions plugin(s)")
    assert lines[1] == "FAILED [lowest end] cdk CLI synth: AssertionError: cdk synth failed: boom"


def test_the_import_check_refuses_the_checkouts_sources() -> None:
    # In the project's venv the package is installed editable, i.e. from the checkout:
    # exactly what the check must refuse in an end's venv.
    with pytest.raises(AssertionError, match="imported the checkout's sources"):
        install_smoke.check_import(Path())
