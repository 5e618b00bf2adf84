"""Model inversion -- (a) class-representative inversion by optimising inputs against the model (white-box
gradients, with image priors), (b) DC-U's "condensive" inversion (a generator trained to invert the model) -- and
the scores that compare original, unlearned and retrained models with numbers.

An image per (class, restart) is parameterised through a sigmoid (so it stays in [0,1]) and optimised with Adam
to minimise CE(model(jitter(x)), c) + tv_weight * total variation + l2_weight * ||x - 0.5||^2; random
translations by up to ``jitter`` pixels each step keep the result from being adversarial noise.

(b) ``condensive_invert`` is DC-U's multi-image condensive attack (docs/reference/dcu.md §5.7): the attacker's image pool is
split into ``subclasses`` K-means sub-classes per class in the attacked model's feature space, and a generator
from sub-class codes to images is trained through the frozen model with CE(f(G(k)), y) + MSE(G(k), x) -- the
``mi`` condenser, run on the attacker's pool. G(k) is the reconstruction of sub-class k. The reference feeds the
training images themselves as MSE targets (``pool="train"`` reproduces it), which makes the "attack" a picture of
the training data whatever the model; by default the pool is the test split, data the attacker could hold, so
what the reconstructions share with the forget set comes through the model.

Scores of a set of reconstructions against the forget set:
* ``ssim``: per reconstruction, the best SSIM (kornia, window 7) to a forget image of its class, averaged;
* ``feature_cosine``: the same with cosine similarity in an independent evaluation model's feature space;
* ``evaluator_accuracy``: how often that evaluation model recognises the reconstruction's class.
An unlearned model whose reconstructions score like the retrained model's leaks no more about the forget set.
"""

from __future__ import annotations

import kornia.metrics
import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.models import frozen
from dcforget.runtime import seeded
from dcforget.train import as_unit


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert_classes(
    model,
    num_classes: int,
    image_shape,
    *,
    per_class: int = 1,
    steps: int = 300,
    lr: float = 0.05,
    tv_weight: float = 0.05,
    l2_weight: float = 0.01,
    jitter: int = 2,
    seed: int = 0,
    classes: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (images [n, C, H, W] in [0,1], their target classes [n])."""
    device = next(model.parameters()).device
    classes = list(range(num_classes)) if classes is None else classes
    targets = torch.tensor(classes, device=device).repeat_interleave(per_class)
    with seeded(seed, device), frozen(model):
        z = (torch.randn(len(targets), *image_shape, device=device) * 0.1).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            x = torch.sigmoid(z)
            if jitter:
                dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,)))
                xj = torch.roll(x, shifts=(dx, dy), dims=(-1, -2))
            else:
                xj = x
            loss = (
                F.cross_entropy(model(xj), targets)
                + tv_weight * total_variation(x)
                + l2_weight * ((x - 0.5) ** 2).mean()
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return torch.sigmoid(z).detach(), targets


def condensive_invert(
    model,
    data,
    *,
    pool: str = "test",
    subclasses: int = 20,
    epochs: int = 200,
    lr: float = 1e-3,
    batch_size: int = 64,
    classes: list[int] | None = None,
    seed: int = 0,
    pool_per_class: int | None = None,
    quiet: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (images [n, C, H, W] in [0,1], their classes [n]), ``subclasses`` per class of ``classes``;
    ``pool_per_class`` caps the attacker's images per class (a seeded subsample)."""
    from dataclasses import replace

    from condense.build import build_condensed

    if pool not in ("test", "train"):
        raise ConfigError(f"the attacker's pool is 'test' or 'train', got {pool!r}")
    split = data.test if pool == "test" else data.train
    if classes is not None:  # only the classes of interest: fewer sub-classes to train
        keep = torch.isin(split.labels, torch.tensor(classes, device=split.labels.device))
        split = split.subset(torch.nonzero(keep).flatten())
    if pool_per_class is not None:
        from dcforget.datasets import cap_per_class

        split = split.subset(cap_per_class(split.labels.cpu(), pool_per_class, seed))
    attacker = replace(data, train=split, source_indices=torch.arange(len(split)), _fingerprint=None)
    device = next(model.parameters()).device
    res = build_condensed(
        attacker,
        "mi",
        model,
        device=device,
        seed=seed,
        clusters=subclasses,
        quiet=quiet,
        options={"epochs": epochs, "lr": lr, "batch_size": batch_size},
    )
    return res.condensed.images.to(device), res.condensed.labels.to(device)


@torch.no_grad()
def score_reconstructions(
    recon: torch.Tensor,
    targets: torch.Tensor,
    forget_images: torch.Tensor,
    forget_labels: torch.Tensor,
    evaluator=None,
    window: int = 7,
) -> dict:
    """Similarity of each reconstruction to the forget images of its class, and an evaluator's accuracy."""
    device = recon.device
    forget = as_unit(forget_images.to(device))
    forget_labels = forget_labels.to(device)
    ssim_best, cos_best = [], []
    feats_f = None
    if evaluator is not None:
        evaluator = evaluator.to(device).eval()
        feats_f = F.normalize(evaluator.features(forget), dim=1)
        feats_r = F.normalize(evaluator.features(recon), dim=1)
    for i in range(len(recon)):
        same = forget_labels == targets[i]
        if not bool(same.any()):
            continue
        cand = forget[same]
        s = kornia.metrics.ssim(recon[i : i + 1].expand(len(cand), -1, -1, -1), cand, window).mean((1, 2, 3))
        ssim_best.append(float(s.max()))
        if feats_f is not None:
            cos_best.append(float((feats_f[same] @ feats_r[i]).max()))
    out = {
        "reconstructions": len(recon),
        "scored": len(ssim_best),
        "ssim": sum(ssim_best) / len(ssim_best) if ssim_best else None,
        "feature_cosine": sum(cos_best) / len(cos_best) if cos_best else None,
    }
    if evaluator is not None:
        out["evaluator_accuracy"] = float((evaluator(recon).argmax(1) == targets).float().mean())
    return out
