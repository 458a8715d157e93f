"""The access ledger's anchors on Azure: a storage account and a container whose
time-based immutability policy is *locked* (write once, read many).

Once locked, Azure refuses to delete or overwrite any blob of the container before
its retention ends, and refuses to shorten the policy or delete it, for anyone, the
subscription owner included (Microsoft's "immutable storage for Azure Blob Storage",
SEC 17a-4(f) assessed). So it is the Azure counterpart of S3 Object Lock in
compliance mode. The anchor writer (``lambdas/ledger/sinks.AzureBlobAnchors``)
writes one blob per anchor and never overwrites one.

Both resources go through azure-mgmt-resource's generic API (no storage SDK is
needed): the account and the container by id, the policy and its ``lock`` action
as plain ARM requests (the policy's ETag is needed for ``If-Match``, which the
generic model drops).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from iot_remote_access.arm.clients import ResourceGroupRef, read_or_none
from iot_remote_access.arm.context import ArmContext
from iot_remote_access.arm.errors import ArmOperationError
from iot_remote_access.arm.resource import ArmResource
from iot_remote_access.core.ledger import DEFAULT_RETENTION_DAYS, retention_problem
from iot_remote_access.core.tree import Construct

STORAGE_API_VERSION = "2023-05-01"
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


class AnchorStorageAccount(ArmResource):
    """A StorageV2 account for anchors: HTTPS and TLS 1.2 only, no public blobs, no shared
    keys (Microsoft Entra ID only), zone-redundant.

    :param name: 3-24 lowercase letters and digits (globally unique).
    :param sku: Default: ``Standard_ZRS``.
    """

    kind = "anchor storage account"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resource_group: ResourceGroupRef,
        name: str,
        location: str,
        sku: str = "Standard_ZRS",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if not _ACCOUNT_NAME.fullmatch(name):
            raise ValueError(
                f"name: {name[:40]!r} is not allowed; allowed: 3-24 lowercase letters and digits"
            )
        super().__init__(scope, construct_id, name=name)
        self.resource_group = resource_group
        self.location = location
        self.sku = sku
        self.tags = {**(tags or {}), "managed-by": "iot-remote-access"}

    @property
    def resource_id(self) -> str:
        return self.resource_group.resource_id("Microsoft.Storage/storageAccounts", self.name)

    def desired_state(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "kind": "StorageV2",
            "sku": {"name": self.sku},
            "tags": self.tags,
            "properties": {
                "minimumTlsVersion": "TLS1_2",
                "supportsHttpsTrafficOnly": True,
                "allowBlobPublicAccess": False,
                "allowSharedKeyAccess": False,
            },
        }

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        return read_or_none(
            self.label,
            ctx.clients.resources().resources.get_by_id,
            self.resource_id,
            api_version=STORAGE_API_VERSION,
        )

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        from azure.mgmt.resource.resources.models import GenericResource, Sku

        desired = self.desired_state()
        body = GenericResource(
            location=self.location,
            kind="StorageV2",
            sku=Sku(name=self.sku),
            tags=self.tags,
            properties=desired["properties"],
        )
        poller = ctx.clients.resources().resources.begin_create_or_update_by_id(
            self.resource_id, body, api_version=STORAGE_API_VERSION
        )
        ctx.progress.wait(poller, f"{'creating' if live is None else 'updating'} {self.label}")


class ImmutableAnchorContainer(ArmResource):
    """A private blob container with a locked time-based immutability policy.

    :param retention_days: how long every blob is locked; at least 366 (one year of logs,
        DPDP Rules 2025 rule 6(1)(e)). A locked policy can be extended, never shortened:
        a lower value is refused by plan and by Azure. Default: 400.
    :param name: Default: ``ledger-anchors``.
    """

    kind = "immutable anchor container"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        account: AnchorStorageAccount,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        name: str = "ledger-anchors",
    ) -> None:
        problem = retention_problem(retention_days)
        if problem is not None:
            raise ValueError(f"retention_days: {problem}")
        if not _CONTAINER_NAME.fullmatch(name):
            raise ValueError(
                f"name: {name[:70]!r} is not allowed; allowed: 3-63 lowercase letters, "
                "digits and single hyphens"
            )
        super().__init__(scope, construct_id, name=name)
        self.account = account
        self.retention_days = retention_days

    @property
    def resource_id(self) -> str:
        return f"{self.account.resource_id}/blobServices/default/containers/{self.name}"

    @property
    def policy_id(self) -> str:
        return f"{self.resource_id}/immutabilityPolicies/default"

    def desired_state(self) -> dict[str, Any]:
        return {
            "properties": {
                "publicAccess": "None",
                "immutabilityPolicy": {
                    "immutabilityPeriodSinceCreationInDays": self.retention_days,
                    "allowProtectedAppendWrites": False,
                    "state": "Locked",
                },
            }
        }

    def read(self, ctx: ArmContext) -> dict[str, Any] | None:
        container = read_or_none(
            self.label,
            ctx.clients.resources().resources.get_by_id,
            self.resource_id,
            api_version=STORAGE_API_VERSION,
        )
        if container is None:
            return None
        policy = self._policy(ctx)
        return {
            "properties": {
                "publicAccess": container.get("properties", {}).get("publicAccess"),
                "immutabilityPolicy": (policy or {}).get("properties"),
            }
        }

    def apply(self, ctx: ArmContext, live: dict[str, Any] | None) -> None:
        if live is None:
            poller = ctx.clients.resources().resources.begin_create_or_update_by_id(
                self.resource_id,
                {"properties": {"publicAccess": "None"}},
                api_version=STORAGE_API_VERSION,
            )
            ctx.progress.wait(poller, f"creating {self.label}")
        policy = self._policy(ctx)
        state = (policy or {}).get("properties", {})
        period = state.get("immutabilityPeriodSinceCreationInDays")
        if state.get("state") == "Locked":
            self._extend_locked(ctx, policy or {}, period)
            return
        headers = {"If-Match": policy["etag"]} if policy and policy.get("etag") else {}
        written = self._call(
            ctx,
            "PUT",
            self.policy_id,
            headers,
            {
                "properties": {
                    "immutabilityPeriodSinceCreationInDays": self.retention_days,
                    "allowProtectedAppendWrites": False,
                }
            },
        )
        # Locking is what makes it write-once for everyone: it needs the policy's ETag.
        self._call(ctx, "POST", f"{self.policy_id}/lock", {"If-Match": written["etag"]}, None)
        ctx.progress.done(f"locked {self.label}: {self.retention_days} days")

    def _extend_locked(self, ctx: ArmContext, policy: dict[str, Any], period: object) -> None:
        if isinstance(period, int) and period > self.retention_days:
            raise ArmOperationError(
                self.label,
                "LockedPolicyCannotBeShortened",
                f"the locked policy keeps blobs {period} days; it can be extended, never "
                f"shortened to {self.retention_days}",
            )
        self._call(
            ctx,
            "POST",
            f"{self.policy_id}/extend",
            {"If-Match": policy["etag"]},
            {
                "properties": {
                    "immutabilityPeriodSinceCreationInDays": self.retention_days,
                    "allowProtectedAppendWrites": False,
                }
            },
        )

    def _policy(self, ctx: ArmContext) -> dict[str, Any] | None:
        try:
            return self._call(ctx, "GET", self.policy_id, {}, None)
        except ArmOperationError as error:
            if error.code in ("ImmutabilityPolicyNotFound", "ResourceNotFound", "NotFound"):
                return None
            raise

    def _call(
        self,
        ctx: ArmContext,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """One ARM request through the resources client's pipeline (auth, retries)."""
        from azure.core.rest import HttpRequest

        client = ctx.clients.resources()
        request = HttpRequest(
            method,
            f"{ctx.clients.endpoint}{path}",
            params={"api-version": STORAGE_API_VERSION},
            headers={"Content-Type": "application/json", **headers},
            content=json.dumps(body) if body is not None else None,
        )
        response = client.send_request(request)
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ArmOperationError(
                self.label,
                str(error.get("code") or response.status_code),
                str(error.get("message") or response.reason)[:300],
            )
        result: dict[str, Any] = response.json() if response.content else {}
        return result
