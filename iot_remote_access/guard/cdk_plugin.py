"""The guard as a CDK policy-validation plugin (the mechanism cdk-nag 3 uses).

Registered with ``Validations.of(app).add_plugins(IotPolicyGuard())`` next to
cdk-nag's packs, it reads the synthesized templates, so it sees every
``AWS::IoT::Policy`` in the app, whoever made it (L1, L2, CfnInclude, raw
overrides), and fails synthesis with the checker's findings.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import jsii

from iot_remote_access import __version__
from iot_remote_access.core.policy_check import RULES
from iot_remote_access.guard.acknowledgements import PLUGIN_NAME
from iot_remote_access.guard.scan import scan_documents
from iot_remote_access.guard.sources import read_policies

__all__ = ["PLUGIN_NAME", "IotPolicyGuard"]


@jsii.implements(cdk.IPolicyValidationPlugin)
class IotPolicyGuard:
    """Fails synthesis when any IoT policy in the app is overly permissive."""

    @property
    def name(self) -> str:
        return PLUGIN_NAME

    @property
    def version(self) -> str:
        return __version__

    @property
    def rule_ids(self) -> list[str]:
        return sorted(RULES)

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        paths = [Path(p) for p in context.template_paths]
        violations: dict[str, list[cdk.PolicyViolatingResource]] = {}
        for result in scan_documents(read_policies(paths)):
            for finding in result.findings:
                violations.setdefault(finding.rule_id, []).append(
                    cdk.PolicyViolatingResource(
                        resource_logical_id=result.source.name,
                        template_path=result.source.file,
                        locations=[
                            f"Properties/PolicyDocument/Statement/{finding.statement}: "
                            f"{finding.action} on {finding.resource} ({finding.message})"
                        ],
                    )
                )
        return cdk.PolicyValidationPluginReport(
            success=not violations,
            violations=[
                cdk.PolicyViolation(
                    rule_name=f"{rule_id} {RULES[rule_id].name}",
                    description=RULES[rule_id].summary,
                    severity=str(RULES[rule_id].severity),
                    fix="Grant exact topics under the thing's own name; see "
                    "iot_remote_access.constructs.DevicePolicy",
                    violating_resources=resources,
                )
                for rule_id, resources in sorted(violations.items())
            ],
        )
