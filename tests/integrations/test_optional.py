"""The adapters stay optional: importing losslab (or the integrations package) loads no framework."""

from __future__ import annotations

import subprocess
import sys

from losslab.core.registry import CATALOG_MODULES


def test_import_loads_no_framework():
    code = ("import sys, losslab, losslab.integrations; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', "
            "'transformers') or m.startswith('losslab.integrations.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # the registry's catalog never imports an adapter either
    assert not [m for m in CATALOG_MODULES if m.startswith("losslab.integrations")]
