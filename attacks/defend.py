"""DC-U's membership-inference defence, "MU-regularisation" (docs/reference/dcu.md §5.7), and the DP-SGD baseline it is judged
against.

MU-regularisation: the overfitting metric and Otsu's threshold pick the training samples the model has memorised
(the ``overfit`` forget spec), and an unlearning request forgets them (the toolkit's default method from a
condensed file, or any registered method). The model then leaks less about the samples an attacker could best
identify, at some cost in accuracy.

DP baseline: the same architecture trained from scratch with DP-SGD (Opacus: per-sample clipping, Gaussian
noise, privacy accounting; ``pip install dcforget[dp]``). Batch norm is not compatible with per-sample clipping,
so Opacus' validator swaps it for group norm. Unlike the reference, which told the accountant ``epochs=1`` and then
trained 70 epochs (so its "epsilon 10" was not the epsilon spent), the accountant here is given the epochs really
trained, and the report states the epsilon it spent.

``privacy_report`` scores any model the same way: accuracies on train / retain (not overfit) / the overfit set /
test; the population MIA of the overfit set against the test set (the reference's "MIA" column); and a
whole-training-set loss attack (members = every training image, non-members = the test set) as ROC AUC and TPR at
1% FPR, the leakage a defence should lower for everyone.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from dcforget.datasets import Data
from dcforget.errors import ConfigError
from dcforget.metrics import population_mia
from dcforget.models import Classifier, model_from_config
from dcforget.runtime import seeded
from dcforget.train import as_unit, evaluate

from .epsilon import confidences
from .roc import auc, tpr_at_fpr


def privacy_report(model: Classifier, data: Data, overfit: torch.Tensor, device: torch.device, seed: int = 0) -> dict:
    """Accuracy and membership leakage of ``model``; ``overfit`` = indices of the samples the defence targets."""
    labels = data.train.labels
    on_overfit = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    on_overfit[overfit.to(labels.device)] = True
    train = evaluate(model, data.train.images, labels, device=device)
    test = evaluate(model, data.test.images, data.test.labels, device=device)
    c_train = confidences(model, data.train.images, labels, device)  # ROC scores: logit-scaled confidence
    c_test = confidences(model, data.test.images, data.test.labels, device)
    mask = on_overfit.cpu()
    rep = {
        "train_acc": train.accuracy,
        "test_acc": test.accuracy,
        "retain_acc": float((train.predictions[~mask] == labels.cpu()[~mask]).float().mean()),
        "overfit_acc": float((train.predictions[mask] == labels.cpu()[mask]).float().mean()) if mask.any() else None,
        "train_auc": auc(c_train, c_test),
        "train_tpr_at_1pct_fpr": tpr_at_fpr(c_train, c_test, 0.01),
    }
    if int(mask.sum()) >= 2:
        m = population_mia(train.losses[mask], test.losses, seed=seed)
        rep.update(overfit_mia=m.accuracy, overfit_auc=auc(c_train[mask], c_test))
    return rep


def train_dp(
    data: Data,
    like: Classifier,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    target_epsilon: float,
    delta: float,
    max_grad_norm: float,
    device: torch.device,
    seed: int = 0,
) -> tuple[Classifier, dict]:
    """A fresh model of ``like``'s architecture trained with DP-SGD (Adam) to ``target_epsilon`` over ``epochs``."""
    try:
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the DP-SGD baseline needs Opacus: pip install 'dcforget[dp]'") from None
    if not (target_epsilon > 0 and 0 < delta < 1 and max_grad_norm > 0):
        raise ConfigError("DP needs epsilon > 0, 0 < delta < 1 and max_grad_norm > 0")
    with seeded(seed, device):
        model = ModuleValidator.fix(model_from_config(like.config)).to(device)
        for m in model.modules():  # Opacus' backward hooks cannot see through in-place activations
            if hasattr(m, "inplace"):
                m.inplace = False
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        ds = torch.utils.data.TensorDataset(data.train.images.cpu(), data.train.labels.cpu())
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
        engine = PrivacyEngine(secure_mode=False)
        model, opt, loader = engine.make_private_with_epsilon(
            module=model,
            optimizer=opt,
            data_loader=loader,
            target_epsilon=target_epsilon,
            target_delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
        )
        t0 = time.perf_counter()
        model.train()
        for _ in range(epochs):
            for x, y in loader:
                if len(y) == 0:  # Poisson sampling may draw an empty batch
                    continue
                loss = torch.nn.functional.cross_entropy(model(as_unit(x.to(device))), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        seconds = time.perf_counter() - t0
    net = model._module.eval()
    info = {
        "epsilon_spent": float(engine.get_epsilon(delta)),
        "target_epsilon": target_epsilon,
        "delta": delta,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "max_grad_norm": max_grad_norm,
        "noise_multiplier": float(opt.noise_multiplier),
        "seconds": seconds,
        "norm_layers": "batch norm replaced by group norm (Opacus ModuleValidator.fix)",
    }
    return net, info


def mu_regularise(
    model: Classifier,
    data: Data,
    *,
    method: str,
    options: dict[str, Any],
    condensed,
    device: torch.device,
    seed: int = 0,
    quiet: bool = True,
):
    """Forget the samples the overfitting metric flags; returns the unlearning result (model, report, split)."""
    from unlearn.request import unlearn_request

    return unlearn_request(
        model, data, "overfit", method, device=device, seed=seed, options=options, condensed=condensed, quiet=quiet
    )
