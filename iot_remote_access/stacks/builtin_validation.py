"""The documented setting that turns aws-cdk-lib's built-in CloudFormation validation off.

aws-cdk-lib runs its own validation (``CloudFormationValidatePlugin``) inside every
``app.synth()``; for the reference app it is most of the synthesis CPU. The App
reads its ``builtinCloudFormationValidation`` property when it is constructed, so
the setting has to be known before the App exists: it is read here from the context
the CDK CLI hands the app (``cdk.json``'s ``context`` and ``cdk synth -c``), the
same two places ``cdk.App`` itself reads (``CDK_CONTEXT_JSON``, or a file named
by ``CONTEXT_OVERFLOW_LOCATION_ENV`` when the context is large).

Default: on. Only the key set to ``false`` turns it off. The validation plugins
registered explicitly (cdk-nag's AwsSolutions pack, the IoT policy guard) run
either way. aws-cdk-lib's own ``CDK_VALIDATION=false`` (``cdk synth
--no-validation``) still turns it off too.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

#: The cdk.json context key (top level of ``context``, next to ``iot-remote-access``).
CONTEXT_KEY = "iot-remote-access:builtinCloudFormationValidation"
#: aws-cdk-lib's environment variables for the context the CLI passes (cx-api names).
_CONTEXT_ENV = "CDK_CONTEXT_JSON"
_CONTEXT_FILE_ENV = "CONTEXT_OVERFLOW_LOCATION_ENV"
_ALLOWED = {True: True, False: False, "true": True, "false": False}


class BuiltinValidationSettingError(ValueError):
    """The context value is not a boolean; the message names the key and the value."""


def _cli_context(environ: Mapping[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    # The same precedence as cdk.App: the overflow file's keys win over the variable's.
    text = environ.get(_CONTEXT_ENV)
    if text:
        context.update(json.loads(text))
    location = environ.get(_CONTEXT_FILE_ENV)
    if location:
        context.update(json.loads(Path(location).read_text(encoding="utf-8")))
    return context


def builtin_validation_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the context keeps aws-cdk-lib's built-in validation on (the default).

    :raises BuiltinValidationSettingError: the key holds anything but true/false.
    """
    environ = os.environ if environ is None else environ
    try:
        value = _cli_context(environ).get(CONTEXT_KEY, True)
    except (OSError, ValueError):
        return True  # unreadable context: cdk.App reports it itself, with its own error
    if isinstance(value, bool | str) and value in _ALLOWED:
        return _ALLOWED[value]
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise BuiltinValidationSettingError(
        f"context {CONTEXT_KEY}: {shown} is not allowed; allowed: true or false"
    )


def validation_props(enabled: bool) -> dict[str, Any]:
    """The ``cdk.App`` keyword for ``enabled``, on every aws-cdk-lib the ranges admit.

    ``builtin_cloud_formation_validation`` is newer than the lowest supported aws-cdk-lib
    (2.269.0 has no such keyword; the install-ends check found it). There, turning
    validation off falls back to the ``CDK_VALIDATION`` environment variable that
    aws-cdk-lib reads.
    """
    if "builtin_cloud_formation_validation" in inspect.signature(cdk.App.__init__).parameters:
        return {"builtin_cloud_formation_validation": enabled}
    if not enabled:
        os.environ["CDK_VALIDATION"] = "false"
    return {}


def new_app(**app_props: Any) -> cdk.App:
    """``cdk.App`` with built-in validation as :data:`CONTEXT_KEY` says (default on).

    :raises BuiltinValidationSettingError: the key holds anything but true/false.
    """
    return cdk.App(**validation_props(builtin_validation_enabled()), **app_props)
