"""Import an optional extra for a test module: skip where it is missing, but fail under CI (CI must run these)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str, extra: str) -> ModuleType:
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        try:
            return importlib.import_module(module)
        except ImportError as exc:  # a skipped adapter test in CI would hide a broken extra
            pytest.fail(f"CI is set but {module} is missing ({exc}); install 'losslab[{extra}]' (the test extra "
                        "includes it)", pytrace=False)
    return pytest.importorskip(module, reason=f"the [{extra}] extra is not installed")
