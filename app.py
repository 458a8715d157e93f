#!/usr/bin/env python3
"""The reference CDK app: `cdk synth` / `cdk deploy` read this (see cdk.json).

cdk.json's ``iot-remote-access:builtinCloudFormationValidation`` (default true)
says whether aws-cdk-lib's built-in CloudFormation validation runs at synthesis;
docs/perf.md says what is given up without it. cdk-nag and the IoT policy guard
run either way.
"""

import sys

import aws_cdk as cdk

from iot_remote_access.settings import CONTEXT_KEY, FleetSettings, SettingsError
from iot_remote_access.stacks import IotRemoteAccessStack
from iot_remote_access.stacks.builtin_validation import (
    BuiltinValidationSettingError,
    builtin_validation_enabled,
    validation_props,
)

try:
    builtin_validation = builtin_validation_enabled()
except BuiltinValidationSettingError as error:
    print(f"error: invalid settings: {error}", file=sys.stderr)
    sys.exit(2)
app = cdk.App(**validation_props(builtin_validation))
try:
    settings = FleetSettings.parse(app.node.try_get_context(CONTEXT_KEY))
except SettingsError as error:
    # One message naming the field, not a traceback: this is the operator's input.
    print("error: invalid settings: " + "; ".join(str(error).splitlines()), file=sys.stderr)
    sys.exit(2)

stack = IotRemoteAccessStack(app, "IotRemoteAccess", settings=settings)
if not builtin_validation:
    # Said at every synth, so turning it off is never silent.
    cdk.Annotations.of(stack).add_info(
        "aws-cdk-lib's built-in CloudFormation validation is off "
        "(context iot-remote-access:builtinCloudFormationValidation=false); "
        "cdk-nag and the IoT policy guard still run"
    )
app.synth()
