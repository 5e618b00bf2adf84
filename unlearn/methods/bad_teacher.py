"""Bad-teacher distillation (Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in
Deep Networks Using an Incompetent Teacher", AAAI 2023; authors' code ``vikram2000b/bad-teaching-unlearning``:
``unlearn.py`` ``blindspot_unlearner`` / ``UnlearnerLoss`` and the settings of ``CIFARSuper20_Rocket_Unlearn.ipynb``).
The student starts as the original and distils (KL at temperature T) from the original on a random 30% of the retain
set and from a randomly initialised teacher on the forget set, the two mixed in one shuffled set.

Registered defaults are the authors' code's: T = 1 (``KL_temperature = 1``), Adam lr 1e-4, 1 epoch, batch 256,
30% of the retain set. DC-U's BD baseline (docs/reference/dcu.md §3.3 BD) runs it at T = 4, Adam 1e-3, 30 epochs
(the defaults before issue #32): ``--option temperature=4 --option lr=1e-3 --option epochs=30`` reproduces it. KL is
batch-mean (the authors use ``F.kl_div``'s default element mean, which only rescales the loss by the number of
classes; with Adam that changes almost nothing).

torchunlearn's ``BadTeacher`` (Harry24k/machine-unlearning-pytorch ``torchunlearn/unlearn/trainers/badteacher.py``;
compared in experiments/parity.py as a named variant, reports/parity-cpu) computes the same two KL terms but pairs
every retain batch with a forget batch (its ``MergedLoaders`` cycles the shorter forget loader), so each forget image
is distilled towards the bad teacher about |R|/|F| times per epoch instead of once; at its settings (SGD 0.01, 5
epochs, the whole retain set) it ends with a lower forget accuracy than ours. Ours has no weight decay option (its
SGD runs without; torchunlearn's 5e-4)."""

import torch

from dcforget.runtime import generator
from dcforget.space import Float
from dcforget.train import fit

from .base import UnlearnContext, register
from .distill import kd_kl


@register(
    "bad-teacher",
    reference='Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023; '
    "vikram2000b/bad-teaching-unlearning unlearn.py blindspot_unlearner + "
    "CIFARSuper20_Rocket_Unlearn.ipynb",
    summary="KL to the original on 30% of retain, to a random teacher on the forget set",
    epochs=1,
    batch_size=256,
    optimizer="adam",
    lr=1e-4,
    schedule="constant",
    bf16=False,
    temperature=1.0,
    retain_fraction=0.3,
    space={"temperature": Float(0.5, 5.0)},
)  # Deep Unlearn: kl_temperature in [0, 5] (0 divides by zero)
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

    fit(
        student,
        x,
        is_forget,
        ctx.train_config(),
        device=ctx.device,
        seed=ctx.seed,
        loss_fn=loss,
        quiet=ctx.quiet,
        desc="bad-teacher",
    )
    return student
