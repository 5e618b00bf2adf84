"""DC-U's "condensed model" (docs/reference/dcu.md §4): a convolutional autoencoder whose encoder (Beginning) and decoder
(Intermediate) form a databank mapping an image to a "condensed" image in [0,1], followed by a classifier
(Final) that can be any registered architecture, applied to the decoded image.

Encoder 3 x (conv 4x4 stride 2, ReLU) with 32/64/128 channels; decoder the mirror with transposed
convolutions and a sigmoid. Trained with CE through the classifier plus ``recon_weight`` x MSE(decoded, input)
(DC-U: an auxiliary head and 0.5 MSE). ``with_classifier(model, arch)`` puts a fresh classifier of another
architecture behind the same databank.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Classifier, Normalize
from .zoo import MODELS


class AutoencoderClassifier(Classifier):
    last_reconstruction = None  # kept for training_loss during training only

    def forward(self, x):
        recon = self.intermediate(self.beginning(x))
        self.last_reconstruction = recon if self.training else None
        return self.final(recon)

    def __getstate__(self):  # copies and pickles never carry the cached autograd graph
        state = dict(self.__dict__)
        state["last_reconstruction"] = None
        return state

    def databank(self, x):
        """The condensed image of x: decoder(encoder(x)), in [0,1]."""
        return self.intermediate(self.beginning(x))

    def training_loss(self, logits, labels, inputs):
        w = float(self.config["options"].get("recon_weight", 0.5))
        return F.cross_entropy(logits, labels) + w * F.mse_loss(self.last_reconstruction, inputs)


@MODELS.register("convae")
def convae(image_shape, num_classes, mean, std, classifier="convnet", recon_weight=0.5):
    from . import create_model

    c, h, w = image_shape
    if h % 8 or w % 8:
        raise ConfigError(f"convae needs image sides divisible by 8, got {h}x{w}")
    if classifier == "convae":
        raise ConfigError("convae's classifier must be another architecture")
    enc = nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(c, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.ReLU(),
    )
    dec = nn.Sequential(
        nn.ConvTranspose2d(128, 64, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, c, 4, 2, 1),
        nn.Sigmoid(),
    )
    inner = create_model(classifier, image_shape=image_shape, num_classes=num_classes, mean=mean, std=std)
    body = nn.Sequential(inner.beginning, inner.intermediate, inner.final.body)
    config = {
        "arch": "convae",
        "image_shape": list(image_shape),
        "num_classes": int(num_classes),
        "mean": list(mean),
        "std": list(std),
        "feature_dim": inner.feature_dim,
        "options": {"classifier": classifier, "recon_weight": recon_weight},
    }
    return AutoencoderClassifier("convae", config, enc, dec, body, inner.final.head)


def with_classifier(model: AutoencoderClassifier, classifier: str) -> AutoencoderClassifier:
    """The same databank (shared modules) behind a fresh classifier of architecture ``classifier``."""
    cfg = model.config
    fresh = convae(
        tuple(cfg["image_shape"]),
        cfg["num_classes"],
        cfg["mean"],
        cfg["std"],
        classifier=classifier,
        recon_weight=cfg["options"].get("recon_weight", 0.5),
    )
    fresh.beginning, fresh.intermediate = model.beginning, model.intermediate
    return fresh.to(next(model.parameters()).device)
