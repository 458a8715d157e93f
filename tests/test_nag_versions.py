"""cdk-nag is an extra: cdk-nag 3 is registered, cdk-nag 2 or none gives a warning, never a crash.

The cdk-nag 2 and "not installed" cases replace ``importlib.metadata.version`` with a
stand-in (installing cdk-nag 2 next to 3 in one venv is not possible); the cdk-nag 3
case uses the real, installed package.
"""

from __future__ import annotations

from importlib import metadata

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks

from iot_remote_access.guard import nag
from iot_remote_access.settings import FleetSettings
from iot_remote_access.stacks import IotRemoteAccessStack


def test_cdk_nag_3_is_registered_as_a_validation_plugin() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    plugins = nag.aws_solutions_plugins(stack)
    assert len(plugins) == 1 and isinstance(plugins[0], AwsSolutionsChecks)
    Annotations.from_stack(stack).has_no_warning("*", Match.any_value())


def _fake_version(version: str | None):  # type: ignore[no-untyped-def]
    def stand_in(name: str) -> str:
        if name != "cdk-nag":
            return metadata.version(name)
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    return stand_in


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("2.38.2", "cdk-nag 2.38.2 is installed; the AwsSolutions checks this stack registers"),
        (None, "pip install 'iot-remote-access\\[nag\\]'"),
    ],
)
def test_without_cdk_nag_3_the_reference_stack_synthesizes_and_warns(
    monkeypatch: pytest.MonkeyPatch, version: str | None, says: str
) -> None:
    monkeypatch.setattr(nag.metadata, "version", _fake_version(version))
    app = cdk.App()
    stack = IotRemoteAccessStack(
        app,
        "Reference",
        settings=FleetSettings(),
        env=cdk.Environment(account="123456789012", region="eu-central-1"),
    )
    app.synth()
    Annotations.from_stack(stack).has_warning("/Reference", Match.string_like_regexp(f".*{says}.*"))
