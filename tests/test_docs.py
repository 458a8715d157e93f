"""The README and the docs site say what the code does.

The README's example app is synthesized by the real, pinned cdk CLI as a user
would run it; its warnings and tables are checked against the reference stack
and the settings model, and its links against the files they point to.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iot_remote_access.settings import CONTEXT_KEY, FleetSettings
from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
MAX_README_BYTES = 12 * 1024


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _example_app(text: str) -> str:
    """The one complete CDK app in a page: the Python block that calls app.synth()."""
    (app,) = [block for block in _python_blocks(text) if "app.synth()" in block]
    return app


def _resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def test_readme_is_a_front_door_not_a_manual() -> None:
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; at most {MAX_README_BYTES}"


def test_getting_started_shows_the_readme_example_unchanged() -> None:
    readme_app = _example_app(README.read_text(encoding="utf-8"))
    docs_app = _example_app((DOCS / "getting-started.md").read_text(encoding="utf-8"))
    assert docs_app == readme_app


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_to_files(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    missing = []
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files: {missing}"


@pytest.mark.parametrize("page", [README, DOCS / "settings.md"], ids=lambda p: p.name)
def test_settings_table_lists_every_top_level_key(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    table_keys = set(re.findall(r"^\| `(\w+)`", text, flags=re.MULTILINE))
    table_keys |= {
        key
        for row in re.findall(r"^\| (`\w+`(?:, `\w+`)+) \|", text, flags=re.MULTILINE)
        for key in re.findall(r"`(\w+)`", row)
    }
    keys = {field.alias or name for name, field in FleetSettings.model_fields.items()}
    assert keys <= table_keys, f"{page.name} lacks settings keys: {sorted(keys - table_keys)}"


def test_readme_example_synthesizes_with_the_cdk_cli(tmp_path: Path) -> None:
    """A user's own app, as in the README: explicit env, guard on, real cdk CLI."""
    (tmp_path / "app.py").write_text(_example_app(README.read_text(encoding="utf-8")))
    outdir = tmp_path / "cdk.out"
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    result = subprocess.run(
        [str(cdk), "synth", "--app", "python app.py", "--quiet", "--no-notices", "-o", str(outdir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert manifest["artifacts"]["FleetAccess"]["environment"] == "aws://123456789012/eu-west-1"
    template = json.loads((outdir / "FleetAccess.template.json").read_text())
    assert len(_resources(template, "AWS::IoT::Policy")) == 1
    (trail,) = _resources(template, "AWS::CloudTrail::Trail")
    assert trail["Properties"]["IsMultiRegionTrail"] is True
    (url,) = _resources(template, "AWS::Lambda::Url")
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert _resources(template, "AWS::CloudWatch::Alarm")


@pytest.fixture(scope="module")
def reference_template() -> dict[str, Any]:
    """The reference stack with this repository's cdk.json settings."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from iot_remote_access.stacks import IotRemoteAccessStack

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"][CONTEXT_KEY]
    app = cdk.App()
    stack = IotRemoteAccessStack(
        app, "IotRemoteAccess", settings=FleetSettings.parse(context), checks=False
    )
    template: dict[str, Any] = Template.from_stack(stack).to_json()
    return template


def test_readme_cost_warning_matches_the_reference_stack(
    reference_template: dict[str, Any],
) -> None:
    """Each row of the README's warning: what the default reference stack creates."""
    (ca,) = _resources(reference_template, "AWS::ACMPCA::CertificateAuthority")
    assert ca["Properties"]["UsageMode"] == "GENERAL_PURPOSE"  # the USD 400/month mode
    assert ca["DeletionPolicy"] == "Retain"
    assert len(_resources(reference_template, "AWS::IoT::Logging")) == 1
    assert len(_resources(reference_template, "AWS::IoT::AccountAuditConfiguration")) == 1
    (trail,) = _resources(reference_template, "AWS::CloudTrail::Trail")
    assert trail["Properties"]["IsMultiRegionTrail"] is True
    readme = README.read_text(encoding="utf-8")
    for claim in ("USD 400 per month", "AWS::IoT::Logging", "AccountAuditConfiguration"):
        assert claim in readme
    assert "multi-region CloudTrail trail" in readme
