"""LRA-NPP: zero-shot class unlearning by layer-wise relevance analysis and neuronal path perturbation (Chang, Zhu,
Xiong, Wu, Guan, Zhou, arXiv 2410.23693; authors' code ``ChangWenhan/LRA-NPP-Unlearning``,
``examples/batch_experiments/core/methods.py``; ../shared/reference/more-methods.md §4). Class forgetting only. It
reads the model and a few images of the forgotten classes that were NOT trained on; no training data at all.

1. Analysis images: up to ``aux_per_class`` (the reference's 36) images of each forgotten class from ``aux``:
   ``"val"`` (default), the request's validation split, held out from training (the reference samples the TEST
   split, which its own evaluation then reuses; we keep evaluation data out of it); or ``"forget"``, the forget set
   itself (training images: still no retain data, but not "outside the training set").
2. Relevance: epsilon-LRP (``epsilon``, the reference's 0.1) of the top logit, seeded with its value, propagated
   through the classifier's LAST Linear layer to its input (the penultimate activations), as the reference takes
   its "first traced relevance". Computed with zennit (``Gradient`` attributor, ``Epsilon`` rule on
   ``torch.nn.Linear``), not by hand.
3. Frequency: each image's top ``top_fraction`` of penultimate neurons by relevance; neurons ranked by how many
   images select them (ties: larger summed relevance first); the first ``perturb_fraction`` of the penultimate
   width are perturbed. The reference's absolute k_a / k_p (CIFAR-10, ResNet-50's 2,048: 200 / 400) are these
   fractions, about 0.1 / 0.2, so they carry over to narrower networks.
4. Perturbation (``perturb``): ``"zero_all"`` (default; the reference's CIFAR ResNet: those neurons' weights into
   every class logit set to 0), ``"zero_class"`` (only into the forgotten classes' logits: its ViT variant),
   ``"zero_class_and_unit"`` (its MNIST MLP: the forgotten classes' weights and the neuron's whole incoming row,
   where a Linear layer produces the penultimate activations), or the baselines ``"gaussian"`` / ``"laplace"``
   (N(0, 1) / Laplace(0, 1) noise added to the weights ``zero_all`` would zero).
"""

from __future__ import annotations

import torch
from torch import nn

from dcforget.errors import ConfigError, ForgetSpecError
from dcforget.runtime import generator
from dcforget.space import Choice, Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import require

PERTURB = ("zero_all", "zero_class", "zero_class_and_unit", "gaussian", "laplace")


def check(o: dict) -> None:
    require(
        o,
        "lrp-npp",
        positive_int=("aux_per_class",),
        positive=("epsilon",),
        choices={"aux": ("val", "forget"), "perturb": PERTURB},
    )
    for k in ("top_fraction", "perturb_fraction"):
        if k in o:
            require(o, "lrp-npp", positive=(k,), fraction=(k,))


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier's last Linear layer (name, module)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError("lrp-npp needs a classifier whose last layer is Linear")
    return found[-1]


def penultimate(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The input of the last Linear layer for ``images`` (model in eval mode)."""
    _, layer = last_linear(model)
    got = []
    hook = layer.register_forward_hook(lambda mod, inputs, out: got.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            for lo in range(0, len(images), batch_size):
                model(as_unit(images[lo : lo + batch_size]))
    finally:
        hook.remove()
    return torch.cat(got).flatten(1)


def epsilon_relevance(
    module: nn.Module, inputs: torch.Tensor, epsilon: float, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Epsilon-LRP through ``module`` (every Linear and Conv2d under zennit's ``Epsilon`` rule; activations pass
    the relevance on): (relevance at the input, output relevance seeded). The output relevance is the output's value
    at ``targets`` (default: each row's top logit), 0 elsewhere."""
    from dcforget.tv import torchvision  # noqa: F401  (zennit imports torchvision: the import fix first)

    # isort: split
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon

    composite = LayerMapComposite([((nn.Linear, nn.Conv2d), Epsilon(epsilon=epsilon))])
    seeded = {}

    def seed(out: torch.Tensor) -> torch.Tensor:
        t = out.argmax(1) if targets is None else targets
        r = torch.zeros_like(out)
        r[torch.arange(len(out)), t] = out[torch.arange(len(out)), t]
        seeded["r"] = r.detach()
        return r

    was = module.training
    module.eval()
    try:
        with Gradient(model=module, composite=composite) as attributor:
            _, relevance = attributor(inputs.detach().clone(), seed)
    finally:
        module.train(was)
    return relevance.detach(), seeded["r"]


def forgotten(ctx: UnlearnContext) -> list[int]:
    if not ctx.split.spec.whole_classes:
        raise ForgetSpecError(
            f"lrp-npp forgets whole classes only (class:C or classes:C1,C2), not {str(ctx.split.spec)!r}"
        )
    return sorted(ctx.data.train.labels.unique().tolist())  # a zero-shot view: these are the forget set's labels


@register(
    "lrp-npp",
    reference="Chang et al., arXiv 2410.23693; ChangWenhan/LRA-NPP-Unlearning "
    "examples/batch_experiments/core/methods.py",
    class_only=True,
    zero_shot=True,
    auxiliary=True,
    validate=check,
    shared_space=False,
    reads_validation=lambda o: o["aux"] == "val",
    summary="LRA-NPP: the penultimate neurons most relevant (epsilon-LRP, zennit) to held-out images of the "
    "forgotten classes are cut from the classifier (zero-shot, class forgetting only)",
    space={
        "top_fraction": Float(0.02, 0.5, log=True),
        "perturb_fraction": Float(0.02, 0.6, log=True),
        "perturb": Choice(("zero_all", "zero_class", "zero_class_and_unit")),
        "aux": Fixed("val"),
        "aux_per_class": Fixed(36),
        "epsilon": Fixed(0.1),
    },
    aux="val",
    aux_per_class=36,
    epsilon=0.1,
    top_fraction=0.1,
    perturb_fraction=0.2,
    perturb="zero_all",
)
def lrp_npp(ctx: UnlearnContext):
    o = ctx.options
    check(o)
    classes = forgotten(ctx)
    model = ctx.copy_original().eval()
    if o["aux"] == "val":
        if ctx.data.val is None:
            raise ConfigError(
                "lrp-npp with aux=val needs a validation split (the checkpoint's val_fraction is 0); use aux=forget"
            )
        x_all, y_all = ctx.data.val.images, ctx.data.val.labels
    else:
        x_all, y_all = ctx.forget()
    pick = torch.cat([torch.nonzero(y_all == c).flatten()[: int(o["aux_per_class"])] for c in classes])
    if len(pick) == 0:
        raise ConfigError(f"lrp-npp: no {o['aux']} images of class(es) {classes} to analyse")
    x = x_all[pick]
    name, layer = last_linear(model)
    acts = penultimate(model, x)
    relevance, _ = epsilon_relevance(layer, acts, float(o["epsilon"]))
    width = acts.shape[1]
    k_a = max(1, round(float(o["top_fraction"]) * width))
    k_p = max(1, round(float(o["perturb_fraction"]) * width))
    top = torch.topk(relevance, k_a, dim=1).indices
    counts = torch.bincount(top.flatten(), minlength=width).float()
    by_relevance = torch.argsort(-relevance.sum(0), stable=True)  # ties in count: larger summed relevance first
    order = by_relevance[torch.argsort(-counts[by_relevance], stable=True)]
    neurons = order[:k_p].to(layer.weight.device)
    cls = torch.tensor(classes, device=layer.weight.device)
    how = o["perturb"]
    with torch.no_grad():
        if how in ("zero_all", "gaussian", "laplace"):
            if how == "zero_all":
                layer.weight[:, neurons] = 0
            else:
                gen = generator(ctx.derived_seed("lrp-npp"))
                shape = layer.weight[:, neurons].shape
                noise = (
                    torch.randn(shape, generator=gen)
                    if how == "gaussian"
                    else torch.distributions.Laplace(0.0, 1.0).icdf(
                        torch.rand(shape, generator=gen).clamp(1e-7, 1 - 1e-7)
                    )
                )
                layer.weight[:, neurons] += noise.to(layer.weight)
        else:
            layer.weight[cls.unsqueeze(1), neurons.unsqueeze(0)] = 0
            if how == "zero_class_and_unit":
                feeding = [
                    m
                    for n, m in model.named_modules()
                    if isinstance(m, nn.Linear) and n != name and m.out_features == layer.in_features
                ]
                if not feeding:
                    raise ConfigError(
                        "lrp-npp perturb=zero_class_and_unit needs a Linear layer producing the "
                        "penultimate activations (an MLP-style classifier); use zero_all or zero_class"
                    )
                feeding[-1].weight[neurons] = 0
                if feeding[-1].bias is not None:
                    feeding[-1].bias[neurons] = 0
    ctx.extra.update(
        classes=classes,
        analysis_images=len(pick),
        aux=o["aux"],
        layer=name,
        width=width,
        perturbed_neurons=neurons.tolist(),
        top_per_image=k_a,
    )
    return model
