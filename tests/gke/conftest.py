"""GKE manifests (the `gke` extra, cdk8s): rendered and checked against
kubernetes-validate and the HiveMQ chart schema in ``../shared/schemas/``."""
