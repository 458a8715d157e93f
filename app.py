#!/usr/bin/env python3
"""The reference CDK app: `cdk synth` / `cdk deploy` read this (see cdk.json)."""

import sys

import aws_cdk as cdk

from iot_remote_access.settings import CONTEXT_KEY, FleetSettings, SettingsError
from iot_remote_access.stacks import IotRemoteAccessStack

app = cdk.App()
try:
    settings = FleetSettings.parse(app.node.try_get_context(CONTEXT_KEY))
except SettingsError as error:
    # One message naming the field, not a traceback: this is the operator's input.
    print("error: invalid settings: " + "; ".join(str(error).splitlines()), file=sys.stderr)
    sys.exit(2)

IotRemoteAccessStack(app, "IotRemoteAccess", settings=settings)
app.synth()
