"""The transformer imports Feast without torch (Feast imports it eagerly); torch still imports afterwards."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from inference.user_features import _import_feast_without_torch
_import_feast_without_torch()
import feast, feast.online_response, feast.torch_wrapper
print('torch' in sys.modules, feast.torch_wrapper.TORCH_AVAILABLE)
import torch
print(torch.zeros(2).sum().item())
"""


def test_feast_is_imported_without_torch_and_torch_still_imports_later() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "0.0"]


def test_feast_imported_normally_once_torch_is_loaded() -> None:
    code = "import torch\n" + CODE.replace(
        "print('torch' in sys.modules, feast.torch_wrapper.TORCH_AVAILABLE)",
        "print(feast.torch_wrapper.TORCH_AVAILABLE)",
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "0.0"]
