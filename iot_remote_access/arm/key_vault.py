"""The CA's private key from Azure Key Vault, as an alternative to a key file.

The secret holds the key as PEM (``application/x-pem-file`` or no content
type) or, when it backs a Key Vault certificate, as a PKCS#12 bundle
(``application/x-pkcs12``). The value is parsed in memory and dropped; only
the CaKey (opaque to ``repr``) remains.
"""

from __future__ import annotations

import base64
import binascii

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from cryptography import x509

from iot_remote_access.arm.clients import SignInCredential
from iot_remote_access.arm.errors import ArmInputError, ArmOperationError
from iot_remote_access.arm.proof_of_possession import CaKey, ca_key_from_pem, ca_key_from_pkcs12

FIELD = "--ca-key-secret"
PKCS12 = "application/x-pkcs12"


def read_ca_key_secret(
    secret_id: str,
    *,
    credential: TokenCredential,
    certificate: x509.Certificate,
    connection_verify: bool | str = True,
    verify_challenge_resource: bool = True,
) -> CaKey:
    """The CA key in the Key Vault secret ``secret_id`` (``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``).

    :param verify_challenge_resource: check that Key Vault's authentication
        challenge names the vault's own domain. Default: True; only a vault
        behind a custom domain (or a local stand-in) needs False.
    """
    from azure.keyvault.secrets import KeyVaultSecretIdentifier, SecretClient

    try:
        identifier = KeyVaultSecretIdentifier(secret_id)
    except ValueError:
        raise ArmInputError(
            f"{FIELD}: {secret_id!r} is not a Key Vault secret id; allowed: "
            "https://<vault>.vault.azure.net/secrets/<name>[/<version>]"
        ) from None
    label = f"Key Vault secret {identifier.name}"
    client = SecretClient(
        identifier.vault_url,
        SignInCredential(credential),
        connection_verify=connection_verify,
        verify_challenge_resource=verify_challenge_resource,
    )
    try:
        secret = client.get_secret(identifier.name, identifier.version)
    except ResourceNotFoundError as error:
        raise ArmOperationError.from_http(label, error) from None
    except HttpResponseError as error:
        raise ArmOperationError.from_http(label, error) from None
    if not secret.value:
        raise ArmInputError(f"{FIELD}: {label} is empty; allowed: the CA's private key")
    source = f"{identifier.vault_url}/secrets/{identifier.name}"
    if secret.properties.content_type == PKCS12:
        try:
            bundle = base64.b64decode(secret.value, validate=True)
        except binascii.Error:
            raise ArmInputError(f"{FIELD}: {label} is not base64 PKCS#12") from None
        return ca_key_from_pkcs12(bundle, field=FIELD, source=source, certificate=certificate)
    return ca_key_from_pem(
        secret.value.encode(), field=FIELD, source=source, certificate=certificate
    )
