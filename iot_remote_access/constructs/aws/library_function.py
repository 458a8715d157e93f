"""LibraryFunction: a Lambda function that runs one of this package's handlers.

Every function of the library is built the same secure way, in one place:
Python 3.14 on arm64, its own role (grants are added where it is wired), an
explicit log group with retention (KMS-encrypted when a key is given), X-Ray
tracing, and Powertools for AWS Lambda from AWS's public layer.

The code asset holds only what a handler needs: the handler's own folder under
``iot_remote_access/lambdas`` and the modules of ``iot_remote_access/core`` (stdlib
only) that it imports, directly or through each other (found by a scan of the
import statements; before, every function shipped, and every synth hashed and
copied, all of ``core``).
It is staged from the installed package (``Path(__file__)``, never the working
directory), so synthesis needs no Docker and works from a built wheel too. Each
handler is staged once per process into one ``ira-assets-*`` temporary folder,
which is removed when the process exits (the CDK has copied the asset into the
cloud assembly by then); earlier versions left a folder per handler per synth.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from iot_remote_access.constructs.aws import props
from iot_remote_access.constructs.aws.key_policy import add_to_key_policy

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # .../iot_remote_access
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
#: Matches the aws-lambda-powertools version the handlers are tested with (pyproject's dev pin).
POWERTOOLS_VERSION = "3.37.0"
_POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/{arch}/{runtime}/{version}"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


# A regular expression rather than ``ast``: parsing every module of every handler
# cost more synthesis CPU than shipping all of core. A match inside a string or a
# comment only ships one module more; every import form is matched:
# ``from iot_remote_access.core.x import``, ``import iot_remote_access.core.x``,
# ``from iot_remote_access.core import (x, y)``, and inside core ``from .x import``
# and ``from . import x``.
_DOTTED = re.compile(r"\biot_remote_access\.core\.(\w+)")
_FROM_CORE = re.compile(r"\bfrom\s+iot_remote_access\.core\s+import\s+(\([^)]*\)|[^\n]*)")
_FROM_PACKAGE = re.compile(r"\bfrom\s+iot_remote_access\s+import\s+(\([^)]*\)|[^\n]*)")
_BARE_IMPORT = re.compile(r"^\s*import\s+iot_remote_access\.core\s*(?:$|as\b|,|#)", re.MULTILINE)
_RELATIVE_MODULE = re.compile(r"\bfrom\s+\.(\w+)\s+import\b")
_RELATIVE_NAMES = re.compile(r"\bfrom\s+\.\s+import\s+(\([^)]*\)|[^\n]*)")
_NAME = re.compile(r"\b(\w+)\b(?:\s+as\s+\w+)?")


def _names(imported: str) -> set[str]:
    return {match.group(1) for match in _NAME.finditer(imported.split("#")[0])} - {"as"}


@cache
def _core_imports(source: Path, in_core: bool) -> frozenset[str]:
    """Names of the ``core`` modules one file imports (anywhere in it, lazily too).

    ``"*"`` when it imports the ``core`` package itself (``import
    iot_remote_access.core``, ``from iot_remote_access import core``): then the
    modules it uses cannot be read from the imports, and all of ``core`` is shipped.
    Cached: the files do not change while a synth runs.
    """
    text = source.read_text(encoding="utf-8")
    found = set(_DOTTED.findall(text))
    for match in _FROM_CORE.finditer(text):
        found |= _names(match.group(1))
    if _BARE_IMPORT.search(text) or any(
        "core" in _names(match.group(1)) for match in _FROM_PACKAGE.finditer(text)
    ):
        found.add("*")
    if in_core:
        found |= set(_RELATIVE_MODULE.findall(text))
        for match in _RELATIVE_NAMES.finditer(text):
            found |= _names(match.group(1))
    return frozenset(found)


def core_closure(sources: Iterable[Path]) -> set[str]:
    """The ``core`` modules (file stems) that ``sources`` need, transitively."""
    core = PACKAGE_ROOT / "core"
    needed: set[str] = set()
    pending = [name for source in sources for name in _core_imports(source, in_core=False)]
    if "*" in pending:
        return {path.stem for path in core.glob("*.py")} - {"__init__"}
    while pending:
        name = pending.pop()
        module = core / f"{name}.py"
        if name in needed or not module.is_file():
            continue  # an imported name that is not a module (from core/__init__) or seen
        needed.add(name)
        pending.extend(_core_imports(module, in_core=True))
    return needed


_staged: dict[tuple[str, tuple[str, ...]], Path] = {}
_staging_root: list[Path] = []  # the process's one temporary folder, once made


def _root() -> Path:
    if not _staging_root:
        root = Path(tempfile.mkdtemp(prefix="ira-assets-"))
        # Removed at exit: synthesis has copied every asset into cdk.out by then.
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _staging_root.append(root)
    return _staging_root[0]


def stage_handler_code(handler_package: str, shared_packages: Sequence[str] = ()) -> Path:
    """Copy the handler's package, ``shared_packages`` (helper folders under
    ``lambdas`` used by several handlers) and ``core`` into a folder for the asset.

    Staged once per process and arguments (the package does not change while a
    synth runs), under one temporary folder removed when the process exits. The
    asset hash is computed from the content, so where it is staged does not
    change the template.
    """
    key = (handler_package, tuple(shared_packages))
    if key in _staged:
        return _staged[key]
    source = PACKAGE_ROOT / "lambdas" / handler_package
    if not (source / "handler.py").is_file():
        raise ValueError(
            f"handler_package: {handler_package!r} has no handler.py under "
            f"{PACKAGE_ROOT / 'lambdas'}; allowed: one of the folders there"
        )
    for shared in shared_packages:
        if not (PACKAGE_ROOT / "lambdas" / shared / "__init__.py").is_file():
            raise ValueError(
                f"shared_packages: {shared!r} is not a package under {PACKAGE_ROOT / 'lambdas'}"
            )
    staging = Path(tempfile.mkdtemp(prefix=f"{handler_package}-", dir=_root()))
    target = staging / "iot_remote_access"
    shutil.copytree(source, target / "lambdas" / handler_package, ignore=_IGNORED)
    for shared in shared_packages:
        shutil.copytree(
            PACKAGE_ROOT / "lambdas" / shared, target / "lambdas" / shared, ignore=_IGNORED
        )
    (target / "core").mkdir()
    shutil.copy2(PACKAGE_ROOT / "core" / "__init__.py", target / "core" / "__init__.py")
    for name in sorted(core_closure((target / "lambdas").rglob("*.py"))):
        shutil.copy2(PACKAGE_ROOT / "core" / f"{name}.py", target / "core" / f"{name}.py")
    shutil.copy2(PACKAGE_ROOT / "__init__.py", target / "__init__.py")
    shutil.copy2(PACKAGE_ROOT / "lambdas" / "__init__.py", target / "lambdas" / "__init__.py")
    _staged[key] = staging
    return staging


class LibraryFunction(Construct):
    """One of the library's Lambda handlers, deployed with secure defaults.

    :param handler_package: folder under ``iot_remote_access/lambdas`` with a
        ``handler.py`` exposing ``handler(event, context)``.
    :param description: shown in the Lambda console.
    :param environment: environment variables. Powertools' service name is set
        from ``handler_package``.
    :param timeout: Default: 30 seconds.
    :param memory_size: Default: 256 MB.
    :param log_retention: Default: one year (audit records live in these logs).
    :param encryption_key: any ``kms.IKey`` for the log group and environment
        variables; CloudWatch Logs is granted its use (for an imported key, a
        synthesis warning quotes the statement to add to its policy). Default:
        AWS-owned keys (no key created per function).
    :param reserved_concurrent_executions: Default: unreserved.
    :param shared_packages: helper folders under ``lambdas`` staged with the handler.
        Default: none.
    :param removal_policy: of the log group. Default: RETAIN (audit records).

    Example::

        import aws_cdk as cdk
        from iot_remote_access.constructs.aws import LibraryFunction
        from iot_remote_access.core.tunnel_rules import TunnelPolicy

        LibraryFunction(
            stack,
            "Sweeper",
            handler_package="tunnel_sweeper",
            description="the library's tunnel sweeper on its own",
            environment={"TUNNEL_POLICY": TunnelPolicy().to_json()},
            timeout=cdk.Duration.minutes(1),
        )

    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler_package: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        timeout: cdk.Duration | None = None,
        memory_size: int = 256,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_YEAR,
        encryption_key: kms.IKey | None = None,
        reserved_concurrent_executions: int | None = None,
        shared_packages: Sequence[str] = (),
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
    ) -> None:
        props.check(
            "LibraryFunction",
            handler_package=(handler_package, str),
            description=(description, str),
            environment=(environment, props.optional(props.MappingOf())),
            timeout=(timeout, props.optional(cdk.Duration)),
            memory_size=(memory_size, props.WHOLE_NUMBER),
            log_retention=(log_retention, logs.RetentionDays),
            encryption_key=(encryption_key, props.optional(props.I_KEY)),
            reserved_concurrent_executions=(
                reserved_concurrent_executions,
                props.optional(props.WHOLE_NUMBER),
            ),
            shared_packages=(shared_packages, props.SequenceOf(str)),
            removal_policy=(removal_policy, cdk.RemovalPolicy),
        )
        super().__init__(scope, construct_id)
        self.shared_packages = tuple(shared_packages)  # AccessLedger.connect checks "ledger"
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, encryption_key=encryption_key,
            removal_policy=removal_policy,
        )  # fmt: skip
        if encryption_key is not None:
            self._let_logs_use(encryption_key)
        # An explicit role with only the log-group grant: AWSLambdaBasicExecutionRole
        # would allow writing to every log group (cdk-nag AwsSolutions-IAM4).
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"iot-remote-access {handler_package} function",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"iot_remote_access.lambdas.{handler_package}.handler.handler",
            code=lambda_.Code.from_asset(str(stage_handler_code(handler_package, shared_packages))),
            description=description,
            role=self.role,
            timeout=timeout or cdk.Duration.seconds(30),
            memory_size=memory_size,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment_encryption=encryption_key,
            reserved_concurrent_executions=reserved_concurrent_executions,
            layers=[self._powertools_layer()],
            environment={
                "POWERTOOLS_SERVICE_NAME": f"iot-remote-access-{handler_package}",
                "POWERTOOLS_METRICS_NAMESPACE": "IotRemoteAccess",
                **(environment or {}),
            },
        )
        self.log_group.grant_write(self.role)
        cdk.Validations.of(self.role).acknowledge(
            cdk.Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, "
                "which support no resource-level permissions; every other grant is exact.",
            )
        )

    def _let_logs_use(self, key: kms.IKey) -> None:
        logs_principal = iam.ServicePrincipal(f"logs.{cdk.Stack.of(self).region}.amazonaws.com")
        if isinstance(key, kms.Key):
            key.grant_encrypt_decrypt(logs_principal)
            return
        # A grant to a service on an imported key is dropped without a word: say so.
        add_to_key_policy(
            key,
            self,
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsToUseKey",
                principals=[logs_principal],
                actions=["kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
            ),
        )

    def _powertools_layer(self) -> lambda_.ILayerVersion:
        # AWS publishes one SSM parameter per Powertools release; resolving it at
        # deploy time pins the version in every region without hard-coding ARNs.
        parameter = _POWERTOOLS_LAYER_PARAMETER.format(
            arch="arm64", runtime=RUNTIME.name, version=POWERTOOLS_VERSION
        )
        arn = ssm.StringParameter.value_for_string_parameter(self, parameter)
        return lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", arn)
