"""GCP building blocks: cdk8s constructs for GKE (and the Pub/Sub topology).

Import each construct from its own module; this package re-exports nothing,
so importing one part does not load the others' dependencies.
"""
