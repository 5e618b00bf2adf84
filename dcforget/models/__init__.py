"""Model zoo: registry + factory. ``create_model("cnn", info)`` or ``create_model("cnn", shape=..., ...)``."""

from __future__ import annotations

from typing import Any

from ..datasets import DatasetInfo
from ..errors import ConfigError
from . import autoencoder  # noqa: E402,F401  (registers convae)
from .base import Classifier, Normalize, frozen
from .zoo import MODELS


def create_model(
    arch: str,
    info: DatasetInfo | None = None,
    *,
    image_shape=None,
    num_classes=None,
    mean=None,
    std=None,
    **options: Any,
) -> Classifier:
    """Build a registered architecture for a dataset (``info``) or for explicit shape/classes/normalisation."""
    factory = MODELS.get(arch)
    if info is not None:
        image_shape, num_classes = info.image_shape, info.num_classes
        mean, std = info.mean, info.std
    if image_shape is None or num_classes is None:
        raise ConfigError("create_model needs a dataset info or image_shape and num_classes")
    channels = image_shape[0]
    mean = tuple(mean) if mean is not None else (0.0,) * channels
    std = tuple(std) if std is not None else (1.0,) * channels
    try:
        return factory(tuple(image_shape), int(num_classes), mean, std, **options)
    except (TypeError, ValueError) as err:  # an unknown option, or a bad value (hidden=[32] for two layers, dropout=2)
        raise ConfigError(f"bad options for model {arch!r} ({options}): {err}") from None
    except RuntimeError as err:  # e.g. an input too small for the architecture
        raise ConfigError(f"model {arch!r} cannot take images of shape {tuple(image_shape)}: {err}") from None


def model_from_config(config: dict[str, Any]) -> Classifier:
    """Rebuild a model from ``Classifier.config`` (as stored in checkpoints)."""
    return create_model(
        config["arch"],
        image_shape=config["image_shape"],
        num_classes=config["num_classes"],
        mean=config["mean"],
        std=config["std"],
        **config.get("options", {}),
    )


__all__ = ["MODELS", "Classifier", "Normalize", "create_model", "frozen", "model_from_config"]
