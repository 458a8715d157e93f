"""The ledger's anchors on Azure: the locked immutable container and the anchor writer.

Real parts: azure-mgmt-resource's client through the Azure plan/deploy engine, and
azure-storage-blob's ContainerClient; `evidence verify` through the console entry point.
STAND-INS (no Azure): ``StorageArmStandIn`` (the ARM stand-in with storage resources) and
``BlobStandIn`` (the Blob service on loopback), both in tests/support/azure_storage_standin.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from iot_remote_access.arm import deployment
from iot_remote_access.arm.deployment import Action
from iot_remote_access.arm.errors import ArmOperationError
from iot_remote_access.constructs.azure import AnchorStorageAccount, ImmutableAnchorContainer
from iot_remote_access.core.tree import Root
from iot_remote_access.lambdas.anchor_sinks.sinks import (
    AnchorExists,
    AzureBlobAnchors,
    anchor_bodies,
    anchor_chain,
    write_anchor,
)
from tests.support.azure_helpers import GROUP, SUBSCRIPTION, context_for
from tests.support.azure_helpers import resource_group as group
from tests.support.azure_storage_standin import STORAGE_API, BlobStandIn, StorageArmStandIn
from tests.support.cli_runner import run_cli
from tests.support.ledger_chain import START, build_chain, export

ACCOUNT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/"
    "Microsoft.Storage/storageAccounts/fleetanchors"
)
CONTAINER_ID = f"{ACCOUNT_ID}/blobServices/default/containers/ledger-anchors"
POLICY = f"{CONTAINER_ID}/immutabilityPolicies/default"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StorageArmStandIn]:
    with StorageArmStandIn(tmp_path) as server:
        server.add_resource_group(SUBSCRIPTION, GROUP)
        yield server


def _tree(retention_days: int = 400) -> Root:
    root = Root("azure")
    account = AnchorStorageAccount(
        root, "Account", resource_group=group(), name="fleetanchors", location="northeurope"
    )
    ImmutableAnchorContainer(root, "Anchors", account=account, retention_days=retention_days)
    return root


def test_deploy_creates_a_locked_container_with_exactly_these_requests_standin(
    standin: StorageArmStandIn,
) -> None:
    ctx, _ = context_for(standin)
    root = _tree()
    assert [r.action for r in deployment.plan(root, ctx).resources] == [Action.CREATE] * 2
    deployment.deploy(root, ctx)

    writes = [(w.method, w.path, w.api_version) for w in standin.writes()]
    assert writes == [
        ("PUT", ACCOUNT_ID, STORAGE_API),
        ("PUT", CONTAINER_ID, STORAGE_API),
        ("PUT", POLICY, STORAGE_API),
        ("POST", f"{POLICY}/lock", STORAGE_API),
    ]
    account, container, policy, lock = standin.writes()
    assert account.body["kind"] == "StorageV2" and account.body["sku"] == {"name": "Standard_ZRS"}
    assert account.body["properties"] == {
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
        "allowBlobPublicAccess": False,
        "allowSharedKeyAccess": False,
    }
    assert container.body == {"properties": {"publicAccess": "None"}}
    assert policy.body == {
        "properties": {
            "immutabilityPeriodSinceCreationInDays": 400,
            "allowProtectedAppendWrites": False,
        }
    }
    assert "if-match" not in policy.headers  # a new policy
    assert lock.headers["if-match"] == policy.response["etag"]  # locks exactly that policy
    assert standin.locked_days(CONTAINER_ID) == 400

    since = len(standin.writes())
    assert [r.action for r in deployment.plan(root, ctx).resources] == [Action.NONE] * 2
    deployment.deploy(root, ctx)
    assert len(standin.writes()) == since


def test_a_locked_policy_is_extended_never_shortened_standin(standin: StorageArmStandIn) -> None:
    ctx, _ = context_for(standin)
    deployment.deploy(_tree(400), ctx)

    with pytest.raises(ArmOperationError, match="LockedPolicyCannotBeShortened"):
        deployment.deploy(_tree(366), ctx)
    assert standin.locked_days(CONTAINER_ID) == 400

    deployment.deploy(_tree(730), ctx)
    (extend,) = standin.find("POST", "/immutabilityPolicies/default/extend")
    assert extend.body["properties"]["immutabilityPeriodSinceCreationInDays"] == 730
    assert extend.headers["if-match"]
    assert standin.locked_days(CONTAINER_ID) == 730


def test_retention_below_the_legal_minimum_is_refused_naming_the_field() -> None:
    root = Root("azure")
    account = AnchorStorageAccount(
        root, "Account", resource_group=group(), name="fleetanchors", location="northeurope"
    )
    with pytest.raises(ValueError, match=r"^retention_days: 30 is not allowed; allowed: .*366"):
        ImmutableAnchorContainer(root, "Anchors", account=account, retention_days=30)
    with pytest.raises(ValueError, match=r"^name: 'Fleet_Anchors' is not allowed"):
        AnchorStorageAccount(
            root, "Bad", resource_group=group(), name="Fleet_Anchors", location="northeurope"
        )


def test_the_anchor_job_writes_once_and_evidence_verify_reads_the_downloaded_folder(
    tmp_path: Path,
) -> None:
    with BlobStandIn() as blobs:
        blobs.locked.add(("fleetanchors", "ledger-anchors"))
        container = ContainerClient.from_container_url(
            blobs.container_url("fleetanchors", "ledger-anchors")
        )
        sink = AzureBlobAnchors(container)
        records = build_chain(12)
        lines = [r.line() for r in records]
        first = anchor_chain(lambda _: lines[:7], sink, "access", now=START + timedelta(hours=1))
        second = anchor_chain(
            lambda seq: lines[seq:], sink, "access", now=START + timedelta(hours=2)
        )
        assert (first["anchored"], second["anchored"], second["checked"]) == (6, 11, 6)
        puts = [h for method, _, h in blobs.requests if method == "PUT"]
        assert [h.get("if-none-match") for h in puts] == ["*", "*"]  # create-only writes

        body = next(iter(anchor_bodies(sink, "access")))
        from iot_remote_access.core.ledger import parse_anchor

        with pytest.raises(AnchorExists, match="never overwritten"):
            write_anchor(sink, "access", parse_anchor(body.rstrip()))

        # An auditor downloads the container (az storage blob download-batch) and verifies.
        folder = tmp_path / "anchors"
        for (_, _, name), data in blobs.blobs.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    chain = tmp_path / "chain.jsonl"
    chain.write_bytes(export(records))
    verified = run_cli("evidence", "verify", str(chain), "--anchors", str(folder))
    assert verified.code == 0, verified.stderr
    assert verified.stdout.startswith("holds: 12 record(s), seq 0..11, 2 anchor(s) checked")
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(export(records).replace(b"sensor-4", b"sensor-0", 1))
    broken = run_cli("evidence", "verify", str(edited), "--anchors", str(folder))
    assert broken.code == 1 and "chain broken at record" in broken.stderr


def test_the_azure_stack_adds_the_anchor_container_from_the_ledger_section_standin(
    standin: StorageArmStandIn,
) -> None:
    from iot_remote_access.settings import FleetSettings
    from iot_remote_access.stacks.azure_stack import AzureStack
    from tests.support.azure_helpers import azure_section

    section = azure_section(deviceStreams=False, provisioning=None)
    section.pop("provisioning")
    for ledger, expected in (
        ({}, None),
        ({"retentionDays": 730, "azure": {"storageAccount": "fleetanchors"}}, 730),
    ):
        settings = FleetSettings.parse({"azure": section, "ledger": ledger})
        stack = AzureStack(Root("azure"), "Fleet", settings=settings, resource_group=group())
        if expected is None:
            assert stack.anchor_container is None
            continue
        assert stack.anchor_container is not None
        ctx, _ = context_for(standin)
        deployment.deploy(stack, ctx)
        assert standin.locked_days(CONTAINER_ID) == expected
    with pytest.raises(ValueError, match=r"storageAccount.*'Fleet-Anchors' is not allowed"):
        FleetSettings.parse(
            {"azure": section, "ledger": {"azure": {"storageAccount": "Fleet-Anchors"}}}
        )
