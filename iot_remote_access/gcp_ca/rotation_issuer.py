"""The rotation service's default issuer: :class:`CaServiceIssuer` from ``ROTATION_CA_*``.

``ROTATION_ISSUER`` names this module (its default); ``gcp manifests`` renders the
variables from ``gcp.certificateAuthority``:

``ROTATION_CA_POOL``                     ``projects/P/locations/L/caPools/POOL``
``ROTATION_CA_MAXIMUM_LIFETIME_DAYS``    the pool's maximum certificate lifetime
``ROTATION_CA_ENDPOINT``                 empty: Google's endpoint; a loopback
                                         ``HOST:PORT``: a local stand-in (tests)

The rotation service validates them with its other settings before this runs.
"""

from __future__ import annotations

import os
from datetime import timedelta

from iot_remote_access.gcp_ca.clients import make_client
from iot_remote_access.gcp_ca.issuer import CaServiceIssuer


def from_environment() -> CaServiceIssuer:
    pool = os.environ.get("ROTATION_CA_POOL", "")
    if not pool:
        raise ValueError("ROTATION_CA_POOL: not set; required with the CA Service issuer")
    days = int(os.environ.get("ROTATION_CA_MAXIMUM_LIFETIME_DAYS") or 454)
    endpoint = os.environ.get("ROTATION_CA_ENDPOINT") or None
    return CaServiceIssuer(make_client(endpoint), pool, maximum_lifetime=timedelta(days=days))
