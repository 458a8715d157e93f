"""The access ledger's anchors on Azure (immutable blob storage) and Google Cloud (a GCS
bucket with a locked retention policy): the writer and the anchor job.

Kept apart from ``lambdas/ledger``, which is staged into the AWS functions: this package
uses the Azure and Google SDKs (the ``azure`` / ``gcp`` extras), which they do not have.
"""
