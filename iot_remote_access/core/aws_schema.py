"""Names that a construct creates and its Lambda function uses, written once.

The constructs (synthesis) and the Lambda functions (runtime) must agree on table
keys, index names and the ACM Private CA template; keeping them here, rather than
in the Lambda modules, means synthesis never imports Lambda runtime code (and so
never botocore).
"""

from __future__ import annotations

#: ACM Private CA's end-entity template whose API passthrough overrides the subject:
#: the certificate's CN is the thing name whatever the CSR asks for.
PASSTHROUGH_TEMPLATE_ARN = (
    "arn:aws:acm-pca:::template/EndEntityClientAuthCertificate_APIPassthrough/V1"
)

# The certificate inventory table's global secondary indexes.
EXPIRY_INDEX = "byExpiryDay"
SLOT_INDEX = "bySlot"
REVOKE_INDEX = "byRevokeDay"

# The tunnel state table (tunnel metrics): key, TTL attribute and open-tunnels index.
TUNNEL_STATE_KEY = "pk"
TUNNEL_STATE_TTL_ATTRIBUTE = "expiration"
OPEN_INDEX = "OpenTunnels"
OPEN_INDEX_KEY = "openIndex"
OPEN_INDEX_SORT = "expiresAt"

#: The tunnel-metrics function's variable naming the IAM roles (comma-separated ARNs) whose
#: CloseTunnel calls are the library's own (broker, sweeper): their closes are recorded in
#: the access ledger by those functions, so the metrics function records only operators'.
LEDGER_OWN_CLOSERS_VARIABLE = "LEDGER_OWN_CLOSERS"
