import torch

from dcforget import tv


def test_torchvision_imports_and_builds_models():
    m = tv.torchvision.models.resnet18(num_classes=3).eval()
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_schema_fix_is_idempotent():
    tv._ensure_ops()
    tv._ensure_ops()
    assert hasattr(torch.ops.torchvision, "nms")
