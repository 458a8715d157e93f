"""Plan and deploy a GCP desired state (:class:`~iot_remote_access.constructs.gcp.DesiredState`)
through the Google Cloud SDK."""
