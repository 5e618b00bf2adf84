"""Pruning + unlearning (docs/reference/dcu.md §3.3 P+U): SynFlow scores (Tanaka et al.: |theta * d R / d theta| with all
weights made positive and an all-ones input), 100 iterations of global pruning on an exponential schedule to
95% sparsity of the weight tensors (conv and linear), then fine-tuning on the retain set with the masks kept."""

import torch
from torch import nn

from dcforget.progress import bar
from dcforget.space import Float
from dcforget.train import fit

from .base import UnlearnContext, register


def synflow_masks(model: nn.Module, image_shape, sparsity: float, iterations: int, quiet: bool = True):
    """Global SynFlow pruning masks for every conv/linear weight: {parameter: bool mask}."""
    params = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    masks = {p: torch.ones_like(p, dtype=torch.bool) for p in params}
    was = model.training
    model.eval()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    x = torch.ones(1, *image_shape, device=params[0].device)
    total = sum(p.numel() for p in params)
    for it in bar(range(1, iterations + 1), desc="synflow", quiet=quiet, unit="it"):
        for p in params:
            p.grad = None
        with torch.no_grad():
            for p in params:
                p.mul_(masks[p])
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        scores = torch.cat([(p.grad * p).abs().flatten() for p in params])
        keep = int(total * (1 - sparsity) ** (it / iterations))  # exponential schedule
        threshold = torch.kthvalue(scores.cpu(), max(1, total - keep + 1)).values.to(scores.device)
        for p in params:
            masks[p] = (p.grad * p).abs() >= threshold
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    model.train(was)
    return masks


@register(
    "synflow-prune",
    reference="DC-U, arXiv 2402.00195, baseline P+U (docs/reference/dcu.md §3.3); SynFlow: Tanaka et al., NeurIPS 2020",
    summary="SynFlow-prune to 95% sparsity, then fine-tune on retain with the masks",
    epochs=30,
    batch_size=256,
    optimizer="adam",
    lr=1e-3,
    schedule="constant",
    bf16=False,
    sparsity=0.95,
    iterations=100,
    space={"sparsity": Float(0.5, 0.99)},
)
def synflow_prune(ctx: UnlearnContext):
    o = ctx.options
    model = ctx.copy_original()
    masks = synflow_masks(model, ctx.data.info.image_shape, float(o["sparsity"]), int(o["iterations"]), ctx.quiet)

    @torch.no_grad()
    def apply_masks() -> None:
        for p, m in masks.items():
            p.mul_(m)

    apply_masks()
    x, y = ctx.retain()
    fit(
        model,
        x,
        y,
        ctx.train_config(),
        device=ctx.device,
        seed=ctx.seed,
        after_step=apply_masks,
        quiet=ctx.quiet,
        desc="synflow-prune",
    )
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    ctx.extra["weights_kept"] = kept
    return model
