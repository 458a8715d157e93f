"""Paths the tests share."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Reference data beside the repository (chart schemas), never copied into it.
SHARED = REPO_ROOT.parent / "shared"
