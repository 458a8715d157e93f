"""SecureTunneling: time-limited, justified, logged interactive access to devices.

AWS IoT Secure Tunneling enforces none of the limits a platform team needs
(a tunnel may live 12 hours; IAM has no condition key for the lifetime; no
reason is recorded). So operators never call ``iot:OpenTunnel``: a broker
function does, after checking the request against the deployment's
:class:`~iot_remote_access.core.tunnel_rules.TunnelPolicy`, and a sweeper closes
what should not stay open.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from iot_remote_access.constructs.aws import nag, props
from iot_remote_access.constructs.aws.device_policy import DevicePolicy
from iot_remote_access.constructs.aws.library_function import LibraryFunction
from iot_remote_access.core.tunnel_rules import (
    TAG_EXPIRES_AT,
    TAG_REASON,
    TAG_REQUESTER,
    TunnelPolicy,
)

POLICY_VARIABLE = "TUNNEL_POLICY"
DEFAULT_SWEEP_INTERVAL = cdk.Duration.minutes(5)
_TAG_KEYS = [TAG_REQUESTER, TAG_REASON, TAG_EXPIRES_AT]


class SecureTunneling(Construct):
    """A tunnel broker behind an IAM-authenticated function URL, a scheduled
    sweeper, and the operator policy that sends operators through the broker.

    - ``broker``: the only principal this construct allows ``iot:OpenTunnel``. It
      checks the thing exists (and is in an allowed thing group), the service is
      allowed, the lifetime and the reason, and the number of open tunnels for the
      thing; tags the tunnel; writes one audit record per decision; and returns
      the source access token to the caller only.
    - ``sweeper``: closes tunnels past their allowed lifetime and tunnels whose
      source has not connected within the grace period; one audit record per close.
    - ``operator_policy``: invoke the broker's URL; list, describe and close
      tunnels; an explicit Deny on ``iot:OpenTunnel`` and
      ``iot:RotateTunnelAccessToken`` (a rotation would hand out tokens around the broker).

    ``grant_open(grantee)`` gives your own role or user what requesting a tunnel
    needs (the broker's URL), as ``operator_policy`` does with listing and closing.

    Turns on ``device_policy.enable_tunneling()``: devices receive their
    destination token on ``$aws/things/{thing}/tunnels/notify``.

    :param device_policy: the fleet's device policy (its tunnel switch is turned on).
    :param policy: the limits. Default: ``TunnelPolicy()`` (SSH, 60 of at most 720
        minutes, one open tunnel per thing, 15 minutes to connect, any thing group).
    :param sweep_interval: Default: 5 minutes.
    :param encryption_key: KMS key for the functions' log groups (the audit records)
        and environment. Default: AWS-owned keys.
    :param log_retention: how long the audit records are kept. Default: one year.
    :param removal_policy: of the functions' log groups (the audit records).
        Default: RETAIN.
    :param operator_principal: who may assume ``operator_role`` (which carries the
        operator policy). Default: no role is created.

    Example::

        from aws_cdk import aws_iam as iam
        from iot_remote_access.constructs.aws import DevicePolicy, SecureTunneling
        from iot_remote_access.core.tunnel_rules import TunnelPolicy

        tunnels = SecureTunneling(
            stack,
            "Tunnels",
            device_policy=DevicePolicy(stack, "Fleet"),
            policy=TunnelPolicy(allowed_services=["SSH"], max_lifetime_minutes=120),
        )
        operators = iam.Role(stack, "Operators", assumed_by=iam.AccountRootPrincipal())
        tunnels.grant_open(operators)  # call the broker; it opens the tunnel

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        device_policy: DevicePolicy,
        policy: TunnelPolicy | None = None,
        sweep_interval: cdk.Duration = DEFAULT_SWEEP_INTERVAL,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        operator_principal: iam.IPrincipal | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "SecureTunneling",
            device_policy=(device_policy, DevicePolicy),
            policy=(policy, props.optional(TunnelPolicy)),
            sweep_interval=(sweep_interval, cdk.Duration),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            log_retention=(log_retention, logs.RetentionDays),
            operator_principal=(operator_principal, props.optional(props.I_PRINCIPAL)),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        self._removal_policy = removal_policy
        self.policy = policy or TunnelPolicy()
        if not cdk.Token.is_unresolved(sweep_interval.to_seconds()) and not (
            60 <= sweep_interval.to_seconds() <= 3600
        ):
            raise ValueError(
                f"sweep_interval: {sweep_interval.to_human_string()} is not allowed; "
                "allowed: 1 to 60 minutes"
            )
        device_policy.enable_tunneling()
        self._environment = {POLICY_VARIABLE: self.policy.to_json()}
        self._broker(encryption_key, log_retention)
        self._sweeper(encryption_key, log_retention, sweep_interval)
        self._operator_policy()
        self.operator_role: iam.Role | None = None
        if operator_principal is not None:
            self.operator_role = iam.Role(
                self,
                "OperatorRole",
                assumed_by=operator_principal,
                description="iot-remote-access operators: request tunnels through the broker",
                managed_policies=[self.operator_policy],
                max_session_duration=cdk.Duration.hours(1),
            )

    def grant_open(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` request tunnels: call the broker through its function URL.

        Exactly what an operator needs to reach the broker (the URL with IAM auth;
        since October 2025 a URL call also needs ``lambda:InvokeFunction``, granted
        only through the URL). It does not grant ``iot:OpenTunnel``: the broker
        opens tunnels after its checks. For listing and closing tunnels too, attach
        ``operator_policy``.
        """
        props.check("SecureTunneling.grant_open", grantee=(grantee, props.I_GRANTABLE))
        broker = self.broker.function.function_arn
        through_url = iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["lambda:InvokeFunctionUrl"],
            resource_arns=[broker],
            conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
        )
        return through_url.combine(
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["lambda:InvokeFunction"],
                resource_arns=[broker],
                conditions={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
            )
        )

    def _iot_arn(self, resource: str) -> str:
        return cdk.Stack.of(self).format_arn(
            service="iot",
            resource=resource,
            resource_name="*",
            arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
        )

    # -- broker: the only opener of tunnels ----------------------------------------------

    def _broker(self, encryption_key: kms.IKey | None, log_retention: logs.RetentionDays) -> None:
        tunnels, things = self._iot_arn("tunnel"), self._iot_arn("thing")
        self.broker = LibraryFunction(
            self,
            "Broker",
            handler_package="tunnel_broker",
            shared_packages=["ledger"],  # records decisions when AccessLedger.connect-ed
            description="iot-remote-access tunnel broker: the only opener of tunnels",
            environment=self._environment,
            encryption_key=encryption_key,
            log_retention=log_retention,
            removal_policy=self._removal_policy,
        )
        self.broker_url = self.broker.function.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.AWS_IAM
        )
        broker_role = self.broker.role
        broker_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="OpenTunnelsForAllowedServicesOnly",
                actions=["iot:OpenTunnel"],
                resources=[tunnels, things],
                conditions={
                    "ForAllValues:StringEquals": {
                        "iot:TunnelDestinationService": list(self.policy.allowed_services),
                        "aws:TagKeys": _TAG_KEYS,
                    },
                },
            )
        )
        broker_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CountTunnelsPerThing",
                actions=["iot:ListTunnels"],
                resources=[tunnels, things],
            )
        )
        broker_role.add_to_principal_policy(
            _close_without_delete("RollBackTunnelsNotHandedOut", tunnels)
        )
        wildcards = [tunnels, things]
        thing_actions = ["iot:DescribeThing"]
        if self.policy.thing_groups:
            thing_actions.append("iot:ListThingGroupsForThing")
            wildcards.append(self._iot_arn("thinggroup"))
            broker_role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadThingGroupParents",
                    actions=["iot:DescribeThingGroup"],
                    resources=[self._iot_arn("thinggroup")],
                )
            )
        broker_role.add_to_principal_policy(
            iam.PolicyStatement(sid="CheckThings", actions=thing_actions, resources=[things])
        )
        nag.acknowledge_wildcard_resources(
            broker_role,
            "The broker opens tunnels to any thing of the fleet: tunnel ids are created by "
            "OpenTunnel and things are chosen per request, so neither is known at deploy time. "
            "OpenTunnel is limited to the allowed services and the broker's tag keys, and every "
            "request is checked by the broker's rules before the call.",
            wildcards,
        )

    # -- sweeper: closes what should not stay open -----------------------------------------

    def _sweeper(
        self,
        encryption_key: kms.IKey | None,
        log_retention: logs.RetentionDays,
        sweep_interval: cdk.Duration,
    ) -> None:
        tunnels = self._iot_arn("tunnel")
        self.sweeper = LibraryFunction(
            self,
            "Sweeper",
            handler_package="tunnel_sweeper",
            shared_packages=["ledger"],  # records decisions when AccessLedger.connect-ed
            description="iot-remote-access tunnel sweeper: closes expired and unused tunnels",
            environment=self._environment,
            encryption_key=encryption_key,
            log_retention=log_retention,
            removal_policy=self._removal_policy,
            timeout=cdk.Duration.minutes(2),
        )
        self.sweeper.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindTunnels",
                actions=["iot:ListTunnels", "iot:DescribeTunnel"],
                resources=[tunnels],
            )
        )
        self.sweeper.role.add_to_principal_policy(_close_without_delete("CloseTunnels", tunnels))
        nag.acknowledge_wildcard_resources(
            self.sweeper.role,
            "The sweeper inspects and closes every tunnel of the account and region, including "
            "tunnels opened around the broker; their ids are only known at run time.",
            [tunnels],
        )
        # A failed sweep is not retried: the next scheduled one is minutes away.
        self.sweeper.function.configure_async_invoke(retry_attempts=0)
        self.sweep_rule = events.Rule(
            self,
            "SweepSchedule",
            description="iot-remote-access: close expired and unused tunnels",
            schedule=events.Schedule.rate(sweep_interval),
            targets=[targets.LambdaFunction(self.sweeper.function, retry_attempts=0)],
        )

    # -- operator policy: through the broker only ---------------------------------------------

    def _operator_policy(self) -> None:
        tunnels, things = self._iot_arn("tunnel"), self._iot_arn("thing")
        broker_arn = self.broker.function.function_arn
        self.operator_policy = iam.ManagedPolicy(
            self,
            "OperatorPolicy",
            description="iot-remote-access operators: tunnels through the broker only",
            statements=[
                iam.PolicyStatement(
                    sid="InvokeTheBrokerUrl",
                    actions=["lambda:InvokeFunctionUrl"],
                    resources=[broker_arn],
                    conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                ),
                # Since October 2025 a function URL call also needs InvokeFunction.
                iam.PolicyStatement(
                    sid="InvokeTheBrokerThroughItsUrlOnly",
                    actions=["lambda:InvokeFunction"],
                    resources=[broker_arn],
                    conditions={"Bool": {"lambda:InvokedViaFunctionUrl": "true"}},
                ),
                iam.PolicyStatement(
                    sid="ListAndDescribeTunnels",
                    actions=["iot:ListTunnels", "iot:DescribeTunnel"],
                    resources=[tunnels, things],
                ),
                _close_without_delete("CloseTunnels", tunnels),
                iam.PolicyStatement(
                    sid="NoTunnelsAroundTheBroker",
                    effect=iam.Effect.DENY,
                    actions=["iot:OpenTunnel", "iot:RotateTunnelAccessToken"],
                    resources=["*"],
                ),
            ],
        )
        nag.acknowledge_wildcard_resources(
            self.operator_policy,
            "Operators list, inspect and close any tunnel of the account and region (tunnel ids "
            "are created at run time) and list them by thing; opening and token rotation are "
            "denied.",
            [tunnels, things],
        )


def _close_without_delete(sid: str, tunnels: str) -> iam.PolicyStatement:
    # Closed tunnels stay listed (DescribeTunnel, CloudTrail): nobody here may erase one.
    return iam.PolicyStatement(
        sid=sid,
        actions=["iot:CloseTunnel"],
        resources=[tunnels],
        conditions={"Bool": {"iot:Delete": "false"}},
    )
