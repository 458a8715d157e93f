"""The Azure SDK clients one deployment uses, built once from one credential.

The endpoint and TLS trust are parameters so the same code runs against
Azure's sovereign clouds and, in the tests, against a local ARM stand-in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from iot_remote_access.arm.errors import ArmOperationError, AzureSignInRequired

if TYPE_CHECKING:
    from azure.mgmt.iothub import IotHubClient
    from azure.mgmt.iothubprovisioningservices import IotDpsClient
    from azure.mgmt.monitor import MonitorManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

PUBLIC_CLOUD_ENDPOINT = "https://management.azure.com"

T = TypeVar("T")


@dataclass(frozen=True)
class ResourceGroupRef:
    """The resource group every resource of one stack lives in."""

    subscription_id: str
    name: str

    @property
    def id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.name}"

    def resource_id(self, provider_type: str, name: str) -> str:
        """``provider_type`` like ``Microsoft.Devices/IotHubs``."""
        return f"{self.id}/providers/{provider_type}/{name}"


class SignInCredential:
    """Wraps a credential so that "no credential available" becomes :class:`AzureSignInRequired`.

    DefaultAzureCredential raises ClientAuthenticationError with a page of
    text per credential it tried; the CLI shows one line on how to sign in instead.
    """

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        try:
            return self._inner.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        except ClientAuthenticationError:
            raise AzureSignInRequired() from None


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential (CLI login, environment, managed identity, ...)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class AzureClients:
    """Lazily built management clients sharing one credential, endpoint and retry policy.

    :param endpoint: Azure Resource Manager. Default: the public cloud's.
    :param connection_verify: TLS trust: True (system store) or a CA bundle path.
        Default: True.
    :param polling_interval: seconds between polls of a long-running operation
        when Azure sends no Retry-After. Default: 15.
    :param retry_total: retries of throttled (429) and transient failures; the
        SDK waits for Retry-After when Azure sends it. Default: 10 (the SDK's).
    """

    def __init__(
        self,
        credential: TokenCredential,
        subscription_id: str,
        *,
        endpoint: str = PUBLIC_CLOUD_ENDPOINT,
        connection_verify: bool | str = True,
        polling_interval: float = 15,
        retry_total: int = 10,
    ) -> None:
        self.credential = SignInCredential(credential)
        self.subscription_id = subscription_id
        self.endpoint = endpoint.rstrip("/")
        self._options: dict[str, Any] = {
            "connection_verify": connection_verify,
            "polling_interval": polling_interval,
            "retry_total": retry_total,
            "credential_scopes": [f"{self.endpoint}/.default"],
        }
        self._cache: dict[str, Any] = {}

    def _client(self, key: str, build: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = build()
        client: T = self._cache[key]
        return client

    def iot_hub(self, api_version: str) -> IotHubClient:
        from azure.mgmt.iothub import IotHubClient

        return self._client(
            f"iothub:{api_version}",
            lambda: IotHubClient(
                self.credential,
                self.subscription_id,
                api_version=api_version,
                base_url=self.endpoint,
                **self._options,
            ),
        )

    def dps(self) -> IotDpsClient:
        from azure.mgmt.iothubprovisioningservices import IotDpsClient

        return self._client(
            "dps",
            lambda: IotDpsClient(
                self.credential, self.subscription_id, base_url=self.endpoint, **self._options
            ),
        )

    def resources(self) -> ResourceManagementClient:
        from azure.mgmt.resource.resources import ResourceManagementClient

        return self._client(
            "resources",
            lambda: ResourceManagementClient(
                self.credential, self.subscription_id, base_url=self.endpoint, **self._options
            ),
        )

    def monitor(self) -> MonitorManagementClient:
        from azure.mgmt.monitor import MonitorManagementClient

        return self._client(
            "monitor",
            lambda: MonitorManagementClient(
                self.credential, self.subscription_id, base_url=self.endpoint, **self._options
            ),
        )


def raw_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> dict[str, Any]:
    """``cls=`` callback: the body exactly as ARM sent it (REST keys, unknown fields kept)."""
    body = pipeline_response.http_response.json()
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object from Azure, got {type(body).__name__}")
    return body


def read_or_none(
    resource: str, get: Callable[..., Any], *args: Any, **kwargs: Any
) -> dict[str, Any] | None:
    """``get(*args, **kwargs)``'s raw body, None when the resource does not exist.

    Other errors name the resource. A missing resource group is an error, not
    an absent resource: deploying into it could only fail later, after other writes.
    """
    try:
        body = get(*args, cls=raw_json, **kwargs)
    except ResourceNotFoundError as error:
        code = getattr(error.error, "code", None) or ""
        if code in ("ResourceGroupNotFound", "SubscriptionNotFound"):
            raise ArmOperationError.from_http(resource, error) from None
        return None
    except HttpResponseError as error:
        raise ArmOperationError.from_http(resource, error) from None
    if not isinstance(body, dict):
        raise ArmOperationError(resource, "UnexpectedBody", "Azure did not return a JSON object")
    return body
