"""The one place torchvision is imported.

torchvision 0.28.0 from the registry is a CUDA build; on a CPU-only torch its extension fails to load and
``import torchvision`` dies with ``operator torchvision::nms does not exist``. We first try to load the
extension; when that fails we define the two operator schemas torchvision's Python code registers fakes for,
so the import succeeds. ``torchvision.ops.nms`` and image decoding stay unavailable (we use neither).
Every other module does ``from dcforget.tv import torchvision``.
"""

from __future__ import annotations

import importlib.util
import os

import torch

_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_lib = None  # keeps the schema library alive for the life of the process


def _ensure_ops() -> None:
    global _lib
    if hasattr(torch.ops.torchvision, "nms"):
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.submodule_search_locations:
        for name in os.listdir(spec.submodule_search_locations[0]):
            if name.startswith("_C.") and name.endswith((".so", ".pyd")):
                try:
                    torch.ops.load_library(os.path.join(spec.submodule_search_locations[0], name))
                    if hasattr(torch.ops.torchvision, "nms"):
                        return
                except (OSError, RuntimeError):
                    pass
    _lib = torch.library.Library("torchvision", "DEF")
    for schema in _OPS:
        _lib.define(schema)


_ensure_ops()

import torchvision  # noqa: E402  (must follow the schema fix)

__all__ = ["torchvision"]
