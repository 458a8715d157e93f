"""The access ledger on Azure (immutable blob storage) and Google Cloud (a GCS bucket with a
locked retention policy): the anchors and the anchor job (``sinks``), the chain kept as
one create-only object per record (``object_chain``), and its two writers: Teleport
sessions from the audit sink's Pub/Sub subscription (``gcp_sessions``) and Device Streams
alerts from the action group's webhook (``azure_alerts``).

Kept apart from ``lambdas/ledger``, which is staged into the AWS functions: this package
uses the Azure and Google SDKs (the ``azure`` / ``gcp`` extras), which they do not have.
"""
