"""The registered architectures. Each factory takes (image_shape, num_classes, mean, std, **options)."""

from __future__ import annotations

import math

from torch import nn

from ..registry import Registry
from .base import Classifier, Normalize, probe_shape

MODELS: Registry = Registry("model")


def _assemble(arch, options, image_shape, num_classes, mean, std, beginning, intermediate, body, make_head):
    feat = probe_shape(nn.Sequential(beginning, intermediate, body), tuple(image_shape))
    dim = math.prod(feat)
    config = {
        "arch": arch,
        "image_shape": list(image_shape),
        "num_classes": int(num_classes),
        "mean": list(mean),
        "std": list(std),
        "feature_dim": dim,
        "options": dict(options),
    }
    return Classifier(arch, config, beginning, intermediate, body, make_head(dim))


@MODELS.register("mlp")
def mlp(image_shape, num_classes, mean, std, hidden=(512, 128), logit_relu=False):
    """DC-U's MLP: D -> 512 -> 128 -> classes. ``logit_relu`` reproduces the reference's ReLU on the logits
    (a bug: negative logits are clipped); off by default."""
    d = math.prod(image_shape)
    h1, h2 = hidden
    beginning = nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.Linear(d, h1), nn.ReLU())
    intermediate = nn.Sequential(nn.Linear(h1, h2), nn.ReLU())
    head = lambda dim: nn.Sequential(nn.Linear(dim, num_classes), *([nn.ReLU()] if logit_relu else []))
    return _assemble(
        "mlp",
        {"hidden": list(hidden), "logit_relu": logit_relu},
        image_shape,
        num_classes,
        mean,
        std,
        beginning,
        intermediate,
        nn.Identity(),
        head,
    )


@MODELS.register("logreg")
def logreg(image_shape, num_classes, mean, std):
    """Multinomial logistic regression on the normalised pixels: one linear layer (the head), nothing else. With an
    L2 term its training loss is strictly convex, so the exact second-order update (and its certificate) applies."""
    beginning = nn.Sequential(Normalize(mean, std), nn.Flatten())
    head = lambda dim: nn.Linear(dim, num_classes)
    return _assemble("logreg", {}, image_shape, num_classes, mean, std, beginning, nn.Identity(), nn.Identity(), head)


def _conv_block(cin, cout, norm, pool, padding=1):
    return [nn.Conv2d(cin, cout, 3, padding=padding), norm(cout), nn.ReLU(inplace=True), pool]


@MODELS.register("cnn")
def cnn(image_shape, num_classes, mean, std, channels=(32, 64, 128, 256), hidden=1024, dropout=0.5):
    """DC-U's 4-block CNN: [conv3x3 -> BN -> ReLU -> maxpool2] x 4, flatten (1024 at 32x32), fc 1024, dropout,
    fc classes. Beginning = blocks 1-2, intermediate = blocks 3-4 + flatten, final = the fc layers."""
    c = [image_shape[0], *channels]
    blocks = [_conv_block(c[i], c[i + 1], nn.BatchNorm2d, nn.MaxPool2d(2)) for i in range(4)]
    beginning = nn.Sequential(Normalize(mean, std, min_size=16), *blocks[0], *blocks[1])
    intermediate = nn.Sequential(*blocks[2], *blocks[3], nn.Flatten())
    head = lambda dim: nn.Sequential(
        nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )
    return _assemble(
        "cnn",
        {"channels": list(channels), "hidden": hidden, "dropout": dropout},
        image_shape,
        num_classes,
        mean,
        std,
        beginning,
        intermediate,
        nn.Identity(),
        head,
    )


@MODELS.register("convnet")
def convnet(image_shape, num_classes, mean, std, width=128, depth=3, norm="instancenorm"):
    """ConvNet-3 of the condensation literature: [conv3x3(width) -> norm -> ReLU -> avgpool2] x depth, linear.
    "instancenorm" is GroupNorm(width, width) as in the DC/DM code; 28x28 inputs get padding 3 on the first
    conv (as there), so they become 32x32. Beginning = block 1, intermediate = blocks 2..depth-1,
    final = the last block + flatten (the embedding) and the linear head."""
    norms = {
        "instancenorm": lambda ch: nn.GroupNorm(ch, ch, affine=True),
        "batchnorm": nn.BatchNorm2d,
        "groupnorm": lambda ch: nn.GroupNorm(4, ch),
        "none": lambda ch: nn.Identity(),
    }
    make_norm = norms[norm] if norm in norms else MODELS.get(f"norm {norm}")
    pad0 = 3 if tuple(image_shape[1:]) == (28, 28) else 1
    layers = [
        _conv_block(
            image_shape[0] if i == 0 else width, width, make_norm, nn.AvgPool2d(2, 2), padding=pad0 if i == 0 else 1
        )
        for i in range(depth)
    ]
    beginning = nn.Sequential(Normalize(mean, std, min_size=2**depth), *layers[0])
    intermediate = nn.Sequential(*[m for block in layers[1:-1] for m in block])
    body = nn.Sequential(*layers[-1], nn.Flatten())
    return _assemble(
        "convnet",
        {"width": width, "depth": depth, "norm": norm},
        image_shape,
        num_classes,
        mean,
        std,
        beginning,
        intermediate,
        body,
        lambda dim: nn.Linear(dim, num_classes),
    )


@MODELS.register("resnet18")
def resnet18(image_shape, num_classes, mean, std):
    """torchvision's ResNet-18 with the CIFAR stem (conv1 3x3 stride 1, no maxpool), as DC-U uses it.
    Beginning = stem + layer1-2, intermediate = layer3, final = layer4 + avgpool (embedding, 512) and fc."""
    from ..tv import torchvision

    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(image_shape[0], 64, 3, 1, 1, bias=False)
    beginning = nn.Sequential(Normalize(mean, std, min_size=8), net.conv1, net.bn1, net.relu, net.layer1, net.layer2)
    body = nn.Sequential(net.layer4, net.avgpool, nn.Flatten())
    return _assemble(
        "resnet18",
        {},
        image_shape,
        num_classes,
        mean,
        std,
        beginning,
        net.layer3,
        body,
        lambda dim: nn.Linear(dim, num_classes),
    )


@MODELS.register("vgg16")
def vgg16(image_shape, num_classes, mean, std, dropout=0.5):
    """torchvision's VGG-16 (no BN), CIFAR variant as DC-U uses it: conv features, flatten (512 at 32x32, the
    embedding), classifier 512-4096-4096-classes; the avgpool is skipped. Inputs below 32 pixels are resized
    to 32. Beginning = features[:10], intermediate = features[10:20], final = features[20:] + classifier."""
    from ..tv import torchvision

    feats = torchvision.models.vgg16(weights=None).features
    feats[0] = nn.Conv2d(image_shape[0], 64, 3, padding=1)
    beginning = nn.Sequential(Normalize(mean, std, min_size=32), *feats[:10])
    intermediate = nn.Sequential(*feats[10:20])
    body = nn.Sequential(*feats[20:], nn.Flatten())
    head = lambda dim: nn.Sequential(
        nn.Linear(dim, 4096),
        nn.ReLU(True),
        nn.Dropout(dropout),
        nn.Linear(4096, 4096),
        nn.ReLU(True),
        nn.Dropout(dropout),
        nn.Linear(4096, num_classes),
    )
    return _assemble(
        "vgg16", {"dropout": dropout}, image_shape, num_classes, mean, std, beginning, intermediate, body, head
    )
