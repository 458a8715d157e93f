"""cdk-nag's AwsSolutions pack as a CDK validation plugin, when cdk-nag 3 is installed.

cdk-nag is an optional extra (``iot-remote-access[nag]``): a team on cdk-nag 2 (an
Aspect, not a validation plugin; registering it as a plugin fails with
``aspect.visit is not a function``) or without cdk-nag can still install and
synthesize the library. The acknowledgements this library makes use aws-cdk-lib's
``Validations`` API, which cdk-nag 3 reads and cdk-nag 2 does not.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import aws_cdk as cdk
from constructs import IConstruct

#: The cdk-nag major version whose AwsSolutionsChecks is a validation plugin.
NAG_MAJOR = 3
WARNING_ID = "iot-remote-access:cdk-nag"


def installed_nag_version() -> str | None:
    """The installed cdk-nag version, or None."""
    try:
        return metadata.version("cdk-nag")
    except metadata.PackageNotFoundError:
        return None


def aws_solutions_plugins(scope: IConstruct) -> list[Any]:
    """``[AwsSolutionsChecks(scope)]`` with cdk-nag 3; otherwise none, and a warning."""
    version = installed_nag_version()
    if version is None:
        problem = (
            "cdk-nag is not installed, so the AwsSolutions checks are off; "
            "install them with: pip install 'iot-remote-access[nag]' (cdk-nag 3)"
        )
    elif int(version.split(".")[0]) < NAG_MAJOR:
        problem = (
            f"cdk-nag {version} is installed; the AwsSolutions checks this stack registers "
            "need cdk-nag 3 (a validation plugin). With cdk-nag 2, add them yourself with "
            "Aspects.of(app).add(AwsSolutionsChecks()); this library's acknowledgements "
            "(cdk.Validations) are read by cdk-nag 3 only"
        )
    else:
        from cdk_nag import AwsSolutionsChecks

        return [AwsSolutionsChecks(scope)]
    cdk.Annotations.of(scope).add_warning_v2(WARNING_ID, problem)
    return []
