"""Bad-teacher distillation (Chundawat et al.; docs/reference/dcu.md §3.3 BD): the student starts as the original and
distils (KL, T=4) from the original on a random 30% of the retain set and from a randomly initialised
teacher on the forget set. Adam 1e-3, 30 epochs (DC-U's settings). KL is batch-mean (the reference used
F.kl_div's default element mean, which only rescales the loss)."""

import torch

from dcforget.runtime import generator
from dcforget.train import fit

from dcforget.space import Float

from .base import UnlearnContext, register
from .distill import kd_kl


@register("bad-teacher", summary="KL to the original on 30% of retain, to a random teacher on the forget set",
          epochs=30, batch_size=256, optimizer="adam", lr=1e-3, schedule="constant", bf16=False,
          temperature=4.0, retain_fraction=0.3,
          space={"temperature": Float(0.5, 5.0)})  # Deep Unlearn: kl_temperature in [0, 5] (0 divides by zero)
def bad_teacher(ctx: UnlearnContext):
    o = ctx.options
    good = ctx.copy_original().eval()
    bad = ctx.fresh_model(seed=ctx.seed + 1).eval()  # the incompetent teacher: random init, never trained
    student = ctx.copy_original()
    xr, _ = ctx.retain()
    xf, _ = ctx.forget()
    keep = torch.randperm(len(xr), generator=generator(ctx.seed))[: max(1, int(len(xr) * float(o["retain_fraction"])))]
    x = torch.cat([xr[keep.to(xr.device)], xf])
    is_forget = torch.cat([torch.zeros(len(keep)), torch.ones(len(xf))]).long().to(x.device)
    t = float(o["temperature"])

    def loss(logits, flag, inputs):
        with torch.no_grad():
            target = torch.where(flag[:, None].bool(), bad(inputs), good(inputs))
        return kd_kl(logits, target, t)

    fit(student, x, is_forget, ctx.train_config(), device=ctx.device, seed=ctx.seed, loss_fn=loss, quiet=ctx.quiet,
        desc="bad-teacher")
    return student
