"""The checkout the kit runs from: asterisk-conf/, dialplan/, sipp-scenarios/, build/sounds/ and
var/ (the local stack's state). The kit is installed editable from the repository
(`pip install -e ./testkit`); SIAGA112_REPO names another checkout."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository: SIAGA112_REPO, else the checkout this file is in
    (REPO/testkit/src/siaga112_testkit/checkout.py)."""
    named = os.environ.get("SIAGA112_REPO")
    return Path(named).resolve() if named else Path(__file__).resolve().parents[3]
