"""Errors of the Azure runtime, each one line naming the resource and Azure's error code."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError

SIGN_IN_HINT = (
    "no usable Azure credentials: sign in with 'az login' (or set AZURE_TENANT_ID, "
    "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or run with a managed identity), then run again"
)


class AzureSignInRequired(Exception):
    """DefaultAzureCredential found no usable credential. The message says how to sign in."""

    def __init__(self) -> None:
        super().__init__(SIGN_IN_HINT)


class ArmOperationError(Exception):
    """Azure refused or failed an operation on one resource."""

    def __init__(
        self, resource: str, code: str, message: str, *, status: int | None = None
    ) -> None:
        self.resource = resource
        self.code = code
        self.status = status
        status_text = f", HTTP {status}" if status else ""
        first_line = " ".join(message.split())[:300]
        super().__init__(f"{resource}: Azure error {code}{status_text}: {first_line}")

    @classmethod
    def from_http(cls, resource: str, error: HttpResponseError) -> ArmOperationError:
        """From the SDK's error; ARM's ``{"error": {"code", "message"}}`` body when there is one."""
        code = getattr(error.error, "code", None) or (error.reason or "HttpResponseError").replace(
            " ", ""
        )
        message = getattr(error.error, "message", None) or error.message or str(error)
        return cls(
            resource, code, message.splitlines()[0] if message else "", status=error.status_code
        )


class ArmInputError(ValueError):
    """Input that cannot be used (a missing or mismatched CA key, a bad certificate file)."""
