"""The parity tier: our namesake methods against the reference libraries' OWN functions, on the same model, data,
forget set and seed (issue #32).

Each reference function is called as its library calls it, through an adapter:

* **inputs**: our models take [0,1] images and normalise in their first layer (``Classifier.normalize``). The
  libraries' loaders hand out normalised images, and their models have no normalisation layer. The adapter feeds the
  library normalised images ((x - mean) / std, the dataset's statistics) and a view of our model without its
  normalisation layer (``Prenormalized``) that shares our model's parameters, so what the library perturbs in input
  space (JiT's noise, UNSIR's noise images) lives in the space it was written for, and what it changes is our model.
* **loaders**: SUPREME's ``create_dataloader`` semantics: triples ``(x, y, y)``, shuffled where SUPREME shuffles
  (every training loader, the full-set loader of SSD included; seeded here), the last batch kept; its CLI's batch
  size: 64 on a class request, 128 on a random one. Single process (no workers).
* **framework**: SUPREME's methods take a Lightning ``Fabric``; a single-process stand-in (``SingleProcessFabric``:
  setup returns its arguments, all_reduce/broadcast are the identity, backward is ``loss.backward()``) replaces
  it. Lightning and wandb are not needed: where they are not installed, inert stand-in modules are put in place
  while SUPREME's method modules are imported, and removed after. SUPREME's ``unsir`` trains through SUPREME's own
  ``fit_one_unlearning_cycle`` and ``evaluate`` (called as they are; ``evaluate``'s psutil / nvidia-smi resource
  tracking is off unless asked for, and is not asked for); only its module's ``create_dataloader`` (8 workers) is
  swapped, while the call runs, for the same loader in one process.

Ours runs through ``unlearn.request.unlearn_request`` with the reference's settings passed as options where our
registered defaults differ (each row lists them). Both are evaluated by the same ``evaluate_split`` (RA, FA, TA,
population MIA) on the same split, and timed in the same process, the same way.

torchunlearn (Harry24k/machine-unlearning-pytorch; PyPI 0.1.0 has no unlearning methods, so its upstream source is
used): ``git clone https://github.com/Harry24k/machine-unlearning-pytorch`` and set ``$DCFORGET_TORCHUNLEARN`` to the
checkout (an installed ``torchunlearn`` with the methods is used otherwise; without either its rows say "not
compared" and why). Its dependencies are not installed: it runs on ours (torch, torchvision through ``dcforget.tv``,
numpy, scipy, matplotlib, tqdm); pandas, which only its plotting helpers use, is an inert stand-in while it is
imported where it is missing. Its adapter (``run_torchunlearn``):

* **model**: its ``RobModel`` around ``Prenormalized`` (its RobModel stores mean/std without applying them; its
  loaders hand out normalised images), sharing our parameters;
* **loaders**: its demo's: ``(x, y)`` batches of 128, shuffled (seeded), last incomplete batch dropped, no
  augmentation (ours trains without); trainers step over its ``MergedLoaders({Retain, Forget})``;
* **settings**: its README's and demo's: SGD lr 0.01, momentum 0.9, weight decay 5e-4, 5 epochs, no scheduler,
  each class at its own defaults; NegGrad at the README's ``retain_lambda=0.5``; FisherForget at the README's
  ``alphas=[1e-9, 1e-8, 1e-7, 1e-6], repeat=3`` with ``omit_label`` = the forgotten class on a class request. Its
  ``fit`` is called with ``record_type=None`` (no per-epoch evaluation, which only measures) and its printout
  and progress bar are swallowed.

The reference runs first for each seed, so ours can follow what it chose (FisherForget's alpha). Ours runs with the
reference's settings as options (each row lists them); ``neggrad`` is compared with our ``neggrad-plus`` (ours has no
plain ``neggrad``; NegGrad with a retain term is NegGrad+).

SCRUB is in both libraries as different algorithms, and ours is neither: ours is Kurmanji et al.'s SCRUB as Deep
Unlearn ports the authors' ``MIA_experiments.ipynb`` (unlearn/methods/scrub.py). SUPREME's follows the authors'
``small_scale_unlearning.ipynb`` (Adam, weight decay 0.1) plus a parameter-distance term; torchunlearn's is one
objective per step, ``CE(R) + KL(R) - KL(F)``, with no separate max and min passes.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import os
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dcforget.datasets import Data
from dcforget.errors import ConfigError, DivergedError
from dcforget.forget import ForgetSpec
from dcforget.models import Classifier
from dcforget.runtime import synchronize
from dcforget.train import as_unit
from unlearn.request import cumulative_split, evaluate_split, unlearn_request

TORCHUNLEARN_ENV = "DCFORGET_TORCHUNLEARN"
TOLERANCE = 0.05  # FA and RA within 5 points of the reference's


# ------------------------------------------------------------------------------------------------ the adapter
class Prenormalized(nn.Module):
    """Our classifier without its normalisation layer: takes normalised images, shares the classifier's
    parameters (training it trains ours)."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        rest = m.beginning[1:] if isinstance(m.beginning, nn.Sequential) else None
        if rest is None:
            raise ConfigError("the parity adapter needs a model whose beginning is a Sequential led by Normalize")
        return m.final(m.intermediate(rest(x)))


class Triples(Dataset):
    """SUPREME's item format ``(x, clabel, label)`` with x normalised by the model's statistics."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.x = ((as_unit(images.cpu()) - mean.cpu()) / std.cpu()).contiguous()
        self.y = labels.cpu()
        self.targets = self.y.tolist()  # what SUPREME's get_classwise_indices reads (its fast path)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.targets[i], self.targets[i]  # ints, as SUPREME's datasets give


def loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=0, generator=g)


class SingleProcessFabric:
    """What SUPREME's methods call on a Lightning Fabric, for one process on one device."""

    global_rank = 0
    world_size = 1

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def print(self, *a, **k) -> None:  # SUPREME prints progress; silenced
        pass

    def barrier(self, *a, **k) -> None:
        pass

    def all_reduce(self, x, *a, **k):
        return x

    def broadcast(self, x, *a, **k):
        return x

    def setup(self, model, *optimizers, **k):
        model = model.to(self.device)  # Lightning's setup moves the module (UNSIR's noise is built on the CPU)
        return (model, *optimizers) if optimizers else model

    def setup_dataloaders(self, *loaders, **k):
        return loaders[0] if len(loaders) == 1 else loaders

    def backward(self, loss, *a, **k) -> None:
        loss.backward()


def _refuse(module: str) -> Callable[[str], Any]:
    def attr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"{module}.{name}: {module} is not installed; the parity adapter's stand-in does nothing")

    return attr


@contextlib.contextmanager
def _stand_ins():
    """Inert ``lightning.fabric`` / ``wandb`` / SUPREME fabric_setup modules while SUPREME's method modules are
    imported, where the real ones are not importable; removed afterwards (the imported modules keep them)."""
    added = []

    def put(name: str, **attrs: Any) -> None:
        if name in sys.modules:
            return
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        added.append(name)

    have_lightning = importlib.util.find_spec("lightning") is not None
    if not have_lightning:
        put("lightning")
        put("lightning.fabric", Fabric=SingleProcessFabric)
        put("supreme.utils.fabric.fabric_setup", setup_model_for_inference=lambda fabric, model, *a, **k: model)
    if importlib.util.find_spec("wandb") is None:
        put("wandb", config=types.SimpleNamespace(update=lambda *a, **k: None), log=lambda *a, **k: None)
    # SUPREME's training utilities (unsir's) import psutil (memory tracking) and debugpy (a remote-debug helper) at
    # module level and use them only when resource tracking or debugging is asked for, which the adapter never
    # does: stand-ins that refuse any use, so a call that would need them fails loudly instead of measuring nothing
    for name in ("psutil", "debugpy"):
        if importlib.util.find_spec(name) is None:
            put(name, __getattr__=_refuse(name))
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def supreme_status() -> tuple[bool, str]:
    """(available, why not / version)."""
    if importlib.util.find_spec("supreme") is None:
        return False, "SUPREME is not installed (pip install --no-deps supreme-unlearning==0.1.5)"
    try:
        from importlib.metadata import version

        v = version("supreme-unlearning")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        v = "unknown"
    try:
        supreme_function("ssd")
    except Exception as err:  # noqa: BLE001 - any import failure means: not usable here
        return False, f"SUPREME {v} is installed but its methods do not import: {err}"
    return True, f"supreme-unlearning {v}"


def supreme_function(name: str) -> Callable:
    """SUPREME's own method function ``supreme.methods.unlearning_methods.<name>.<name>``."""
    import dcforget.tv  # noqa: F401  (torchvision, which SUPREME's jit imports, loads only through it here)

    with _stand_ins():
        mod = importlib.import_module(f"supreme.methods.unlearning_methods.{name}")
    return getattr(mod, name)


def _git_commit(path: str) -> str:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()[:7] if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@contextlib.contextmanager
def _torchunlearn_stand_ins():
    """torchunlearn imports pandas at module level for its plotting helpers only (``unlearn/_vis.py``,
    ``utils/logit_compare.py``); where pandas is not installed an inert stand-in that refuses any use is put in place
    while torchunlearn is imported, and removed after. torchvision (its data utilities) loads through
    ``dcforget.tv``."""
    import dcforget.tv  # noqa: F401

    added = []
    if importlib.util.find_spec("pandas") is None and "pandas" not in sys.modules:
        mod = types.ModuleType("pandas")
        mod.__getattr__ = _refuse("pandas")  # type: ignore[method-assign]
        sys.modules["pandas"] = mod
        added.append("pandas")
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def torchunlearn_module() -> types.ModuleType:
    """torchunlearn (upstream source, with its methods) from ``$DCFORGET_TORCHUNLEARN`` (a checkout of
    github.com/Harry24k/machine-unlearning-pytorch), else an installed one."""
    if "torchunlearn" in sys.modules:
        return sys.modules["torchunlearn"]
    path = os.environ.get(TORCHUNLEARN_ENV)
    if path:
        if not os.path.isdir(os.path.join(path, "torchunlearn")):
            raise ConfigError(f"${TORCHUNLEARN_ENV}={path} holds no torchunlearn/ package")
        sys.path.insert(0, path)
    try:
        with _torchunlearn_stand_ins():
            mod = importlib.import_module("torchunlearn")
            importlib.import_module("torchunlearn.utils.data")
    finally:
        if path:
            sys.path.remove(path)
    for name in ("SCRUB", "SalUn", "BadTeacher", "NegGrad", "FisherForget"):
        if not hasattr(mod.unlearn, name):
            raise ConfigError(f"torchunlearn at {os.path.dirname(os.path.dirname(mod.__file__))} lacks {name}")
    return mod


def torchunlearn_label() -> str:
    mod = torchunlearn_module()
    commit = _git_commit(os.path.dirname(os.path.dirname(mod.__file__)))
    return f"torchunlearn {getattr(mod, '__version__', '?')}" + (f" ({commit})" if commit else "")


def torchunlearn_status() -> tuple[bool, str]:
    """(available, why not / its label)."""
    path = os.environ.get(TORCHUNLEARN_ENV)
    if path and not os.path.isdir(path):
        return False, f"${TORCHUNLEARN_ENV}={path} is not a directory"
    if not path and importlib.util.find_spec("torchunlearn") is None:
        return False, (
            f"torchunlearn with its methods not found (PyPI 0.1.0 lacks them): git clone "
            f"https://github.com/Harry24k/machine-unlearning-pytorch and set ${TORCHUNLEARN_ENV} to the checkout"
        )
    try:
        return True, torchunlearn_label()
    except Exception as err:  # noqa: BLE001 - any import failure means: not usable here
        where = f"${TORCHUNLEARN_ENV}={path}" if path else "the installed torchunlearn"
        return False, f"torchunlearn at {where} does not import with its methods: {type(err).__name__}: {err}"


# ------------------------------------------------------------------------------------------------ the pairs
@dataclass(frozen=True)
class Pair:
    """One comparison: our ``method`` with ``ours(kind, batch)`` options against ``library``'s ``function`` called
    by ``call``. ``variant`` names a documented difference that remains (empty: none)."""

    method: str
    library: str
    function: str
    kinds: tuple[str, ...]
    ours: Callable[[str, int], dict[str, Any]]
    call: Callable[..., nn.Module] | None  # None: the adapter cannot call it yet (``pending`` says why)
    variant: str = ""
    reference_settings: str = ""
    pending: str = ""


def supreme_batch(kind: str) -> int:
    """SUPREME's CLI batch size: 64 for full-class unlearning, 128 for random."""
    return 64 if kind == "class" else 128


def _call_ssd(name: str, alpha: Callable[[str], float]):
    def call(fn, fabric, model, loaders, kind, **_):
        return fn(
            fabric,
            1,
            False,
            model=model,
            forget_train_dataloader=loaders["forget"],
            full_train_dataloader=loaders["full"],
            dampening_constant=1.0,
            selection_weighting=alpha(kind),
        )

    return call


def _lfssd_alpha(kind: str) -> float:
    return 10.0 if kind == "class" else 3.5  # SUPREME's unlearn_main: CIFAR-10 full class alpha 10, random 3.5


def _call_jit(fn, fabric, model, loaders, kind, **_):
    return fn(fabric, 1, False, model=model, forget_train_dataloader=loaders["forget"])


def _call_scrub(fn, fabric, model, loaders, kind, **_):
    return fn(
        fabric,
        1,
        False,
        model=model,
        retain_train_dataloader=loaders["retain"],
        forget_train_dataloader=loaders["forget"],
    )


def _single_process_loader(dataset, batch_size, is_training=True, num_workers=8, pin_memory=None, num_gpus=1, **k):
    """SUPREME's ``create_dataloader`` (shuffle where training, last batch kept, batch size divided by the GPU
    count) in one process: no workers, no pinned memory. Its shuffle draws from the global RNG, which
    ``run_reference`` seeds."""
    if num_gpus > 1:
        batch_size = max(batch_size // num_gpus, 1)
    return DataLoader(dataset, batch_size=batch_size, shuffle=is_training, num_workers=0, **k)


@contextlib.contextmanager
def _patched(fn: Callable, **names: Any):
    """Replace global ``names`` of ``fn``'s module while the call runs; restored after."""
    g = fn.__globals__
    old = {n: g[n] for n in names}
    g.update(names)
    try:
        yield
    finally:
        g.update(old)


def _call_unsir(fn, fabric, model, loaders, kind, *, context, **_):
    """SUPREME's ``unsir`` as its ``unlearn_main`` calls it for a full-class request: the whole training set (its
    fast path groups it by ``targets``; the retain subset is the first 500 of each remaining class in that order),
    the retain training loader, the retain classes' test loader. Its training runs through SUPREME's own
    ``fit_one_unlearning_cycle`` (Adam, CE, then SUPREME's ``evaluate`` on the retain test loader, which changes
    nothing; its resource tracking is off unless ``track_evaluation_resources`` is passed, so no psutil or
    nvidia-smi call happens). The one stand-in: SUPREME's ``create_dataloader`` in unsir's module, which starts 8
    workers, is replaced by the same loader in one process."""
    classes = context["classes"]
    if len(classes) != 1:
        raise ConfigError("SUPREME's unsir forgets one class per call")
    with _patched(fn, create_dataloader=_single_process_loader):
        return fn(
            fabric,
            1,
            False,
            "fullclass",
            context["num_labels"],
            classes[0],
            model=model,
            trainset=context["trainset"],
            retain_train_dataloader=loaders["retain"],
            retain_test_dataloader=_single_process_loader(context["retain_test"], supreme_batch(kind), False),
        )


PAIRS: dict[str, Pair] = {
    p.method: p
    for p in (
        Pair(
            "ssd",
            "supreme",
            "ssd",
            ("class", "random"),
            lambda kind, b: {"alpha": 10.0, "lam": 1.0, "batch_size": b},
            _call_ssd("ssd", lambda kind: 10.0),
            reference_settings="alpha 10, lambda 1, batches of 64 (class) / 128 (random), shuffled loaders",
        ),
        Pair(
            "lfssd",
            "supreme",
            "lfssd",
            ("class", "random"),
            lambda kind, b: {"alpha": _lfssd_alpha(kind), "lam": 1.0, "batch_size": b},
            _call_ssd("lfssd", _lfssd_alpha),
            reference_settings="alpha 10 (class) / 3.5 (random), lambda 1, shuffled loaders",
        ),
        Pair(
            "jit",
            "supreme",
            "jit",
            ("class", "random"),
            lambda kind, b: {"sigma": 0.1, "lr": 1e-3, "n_samples": 10, "batch_size": b, "mode": "train"},
            _call_jit,
            reference_settings="1 epoch, sigma 0.1 (normalised space), lr 1e-3 SGD, 10 noisy copies, shuffled forget "
            "loader",
        ),
        Pair(
            "scrub",
            "supreme",
            "scrub",
            ("class", "random"),
            lambda kind, b: {
                "epochs": 10,
                "lr": 5e-4,
                "batch_size": b,
                "forget_batch_size": b,
                "msteps": 3,
                "gamma": 1.0,
                "alpha": 0.5,
                "temperature": 2.0,
                "rewind": False,
            },
            _call_scrub,
            variant="different algorithms: ours is Deep Unlearn's SCRUB (SGD, momentum 0.9, weight decay 5e-4, no "
            "parameter-distance term; run here with rewind off); SUPREME's (from the JiT authors' port) runs "
            "Adam with weight decay 0.1 and adds 0.5 * sum_layers ||theta - theta_0||_F to both steps. The lr "
            "decay is the same at 10 epochs (x0.1 after epochs 5, 8, 9)",
            reference_settings="10 epochs, Adam lr 5e-4 wd 0.1, msteps 3, gamma 1, alpha 0.5, kd_T 2, smoothing 0.5",
        ),
        Pair(
            "unsir",
            "supreme",
            "unsir",
            ("class",),
            lambda kind, b: {
                "noise_batch": 32,
                "noise_steps": 25,
                "noise_lr": 0.1,
                "noise_l2": 0.1,
                "noise_copies": 80,
                "retain_per_class": 500,
                "impair_lr": 1e-4,
                "repair_lr": 1e-4,
                "batch_size": 32,
                "repair_batch_size": 128,
                "supreme_leftover_grads": True,
            },
            _call_unsir,
            variant="run in SUPREME's mode: supreme_leftover_grads=True (SUPREME's noise loop leaves the model "
            "trainable and its 25 steps' model gradients in .grad, so its first impair step carries them and "
            "Adam's second moment starts inflated, damping the impair; our default freezes the model while the noise "
            "trains) and repair_batch_size=128 (SUPREME's repair loader). Without the switch ours forgets about 20 "
            "points more on this checkpoint (FA 17 against 36, seeds 0-1); the repair batch alone moves FA by 0.1",
            reference_settings="noise 32 x 25 Adam steps (lr 0.1, l2 0.1), 80 noise batches, 500 retain per class, "
            "impair and repair Adam 1e-4, 1 epoch each",
        ),
    )
}


# ------------------------------------------------------------------------------------------------ torchunlearn
TU_BATCH = 128  # its demo's and README's loaders (BATCH_SIZE = 128, drop_last_train=True)
TU_EPOCHS = 5  # its README / demo: 5 epochs, SGD lr 0.01, momentum 0.9, weight decay 5e-4, no scheduler
TU_OPTIMIZER = "SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)"
TU_SGD = {"epochs": TU_EPOCHS, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": TU_BATCH}
TU_FISHER_ALPHAS = (1e-9, 1e-8, 1e-7, 1e-6)  # FisherForget.fit's default alphas, as its README calls it
TU_FISHER_REPEAT = 3  # its README: repeat=3


@dataclass(frozen=True)
class TUPair:
    """One torchunlearn comparison: torchunlearn's ``cls`` run by ``call(tu, rmodel, loaders, context)`` (returns
    what it chose, e.g. FisherForget's alpha) against our ``ours_method`` with ``ours(reference_info)`` options."""

    method: str  # the parity name (the --methods key)
    ours_method: str  # our registered method
    cls: str
    call: Callable[..., dict[str, Any]]
    ours: Callable[[dict[str, Any]], dict[str, Any]]
    variant: str = ""
    reference_settings: str = ""


def _fit_trainer(trainer, loaders, tu) -> None:
    """Its README's trainer call: SGD 0.01 / 0.9 / 5e-4, 5 epochs, over ``MergedLoaders({Retain, Forget})`` (each
    step a retain batch and a forget batch, the shorter loader cycled). ``record_type=None``: no per-epoch
    evaluation or log (the demo's ``record_rob`` evaluation only measures)."""
    merged = tu.utils.data.MergedLoaders({"Retain": loaders["Retain"], "Forget": loaders["Forget"]})
    trainer.setup(optimizer=TU_OPTIMIZER, scheduler=None, scheduler_type=None, minimizer=None, n_epochs=TU_EPOCHS)
    trainer.fit(train_loaders=merged, n_epochs=TU_EPOCHS, record_type=None)


def _tu_scrub(tu, rmodel, loaders, context):
    _fit_trainer(tu.unlearn.SCRUB(rmodel), loaders, tu)
    return {}


def _tu_salun(tu, rmodel, loaders, context):
    trainer = tu.unlearn.SalUn(rmodel)
    trainer.compute_saliency_mask(loaders["Forget"])
    _fit_trainer(trainer, loaders, tu)
    return {}


def _tu_bad_teacher(tu, rmodel, loaders, context):
    _fit_trainer(tu.unlearn.BadTeacher(rmodel), loaders, tu)
    return {}


def _tu_neggrad(tu, rmodel, loaders, context):
    _fit_trainer(tu.unlearn.NegGrad(rmodel, retain_lambda=0.5), loaders, tu)
    return {}


def _tu_fisher(tu, rmodel, loaders, context):
    """``FisherForget.fit`` as its README calls it (alphas 1e-9..1e-6, 3 draws each, the draw with the largest
    retain-minus-forget training accuracy kept), with ``omit_label`` = the forgotten class on a class request. Its
    Fisher pass (``get_hessian``) is timed on its own as well; the chosen alpha is read from its printout."""
    classes = context["classes"]
    if len(classes) > 1:
        raise ConfigError("torchunlearn's FisherForget omits one label per call")
    ff = tu.unlearn.FisherForget(rmodel)
    spent = {}
    hessian = ff.get_hessian

    def timed_hessian(*a, **k):
        t0 = time.perf_counter()
        try:
            return hessian(*a, **k)
        finally:
            spent["fisher_s"] = time.perf_counter() - t0

    ff.get_hessian = timed_hessian
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ff.fit(
            {"Retain": loaders["Retain"], "Forget": loaders["Forget"]},
            alphas=list(TU_FISHER_ALPHAS),
            repeat=TU_FISHER_REPEAT,
            omit_label=classes[0] if classes else None,
        )
    chosen = [
        line.split(":", 1)[1].strip() for line in printed.getvalue().splitlines() if line.startswith("Best Alpha")
    ]
    return {"alpha": float(chosen[-1]), **spent}


TU_PAIRS: dict[str, TUPair] = {
    p.method: p
    for p in (
        TUPair(
            "scrub",
            "scrub",
            "SCRUB",
            _tu_scrub,
            lambda ref: {
                **TU_SGD,
                "forget_batch_size": TU_BATCH,
                "msteps": TU_EPOCHS,
                "gamma": 1.0,
                "alpha": 1.0,
                "temperature": 1.0,
                "lr_decay_rate": 1.0,
                "rewind": False,
            },
            variant="different algorithms: ours is Kurmanji et al.'s SCRUB as Deep Unlearn ports the authors' "
            "MIA_experiments.ipynb (per epoch a max pass over F, then a min pass over R); torchunlearn's SCRUB "
            "takes one step per (retain, forget) batch pair on CE(R) + KL(R) - KL(F) at once (its msteps argument "
            "is stored and unused), so the unbounded -KL(F) term acts on every step",
            reference_settings="SCRUB(retain_lambda=1, forget_lambda=1, sgda_smoothing=0), T = 1; SGD lr 0.01, "
            "momentum 0.9, wd 5e-4, 5 epochs, no scheduler; retain and forget batches of 128 paired per step",
        ),
        TUPair(
            "salun",
            "salun",
            "SalUn",
            _tu_salun,
            lambda ref: {**TU_SGD, "threshold": 0.5},
            variant="batch composition and mask score: ours follows the authors' RL.py (forget images with random "
            "labels and retain images in one shuffled set, so the forget set is about its share of each epoch); "
            "torchunlearn pairs every retain batch of 128 with a forget batch of 128 (CE(R) + CE(F, random "
            "labels)), cycling the forget batches, so it takes about as many forget steps as retain steps. Its "
            "mask ranks the mean over batches of |batch-mean gradient|; ours (the authors' generate_mask.py) "
            "ranks |gradient summed over F|",
            reference_settings="SalUn(saliency_threshold=0.5, enforce_frozen=True), mask from the shuffled forget "
            "loader; SGD lr 0.01, momentum 0.9, wd 5e-4, 5 epochs; batches of 128",
        ),
        TUPair(
            "bad-teacher",
            "bad-teacher",
            "BadTeacher",
            _tu_bad_teacher,
            lambda ref: {
                "epochs": TU_EPOCHS,
                "batch_size": TU_BATCH,
                "optimizer": "sgd",
                "lr": 0.01,
                "temperature": 1.0,
                "retain_fraction": 1.0,
            },
            variant="batch composition: ours follows the authors' code (retain and forget images in one shuffled "
            "set, each batch a mix in proportion); torchunlearn pairs every retain batch of 128 with a forget "
            "batch of 128 (KL(R || good) + KL(F || bad)), cycling the forget batches. Ours runs SGD with momentum "
            "0.9 and no weight decay (it has no weight_decay option; torchunlearn's 5e-4)",
            reference_settings="BadTeacher(retain_lambda=1, forget_lambda=1, temperature=1), the whole retain "
            "set, the bad teacher a re-initialised copy; SGD lr 0.01, momentum 0.9, wd 5e-4, 5 epochs; batches "
            "of 128",
        ),
        TUPair(
            "neggrad",
            "neggrad-plus",
            "NegGrad",
            _tu_neggrad,
            lambda ref: {**TU_SGD, "alpha": 0.5},
            variant="ours is NegGrad+ (Deep Unlearn's port): its weight_decay is a proximal term "
            "wd/2 ||theta - theta_0||^2 (SGD itself without weight decay) and the model stays in eval mode "
            "(dropout off); torchunlearn decays towards 0 inside SGD and trains in train mode. Both take one step "
            "per retain batch with a forget batch cycled. At the README's retain_lambda 0.5 and lr 0.01 the "
            "unbounded -CE(F) term wins in both: torchunlearn's ends at chance accuracy on every split, ours "
            "reaches non-finite weights, which our request refuses (DivergedError) instead of returning a model",
            reference_settings="NegGrad(retain_lambda=0.5) as its README calls it: 0.5 mean(-CE(F)) + 0.5 "
            "mean(CE(R)); SGD lr 0.01, momentum 0.9, wd 5e-4, 5 epochs; batches of 128",
        ),
        TUPair(
            "fisher",
            "fisher",
            "FisherForget",
            _tu_fisher,
            lambda ref: {"estimator": "batch-mean", "batch_size": TU_BATCH, "omit_label": True, "alpha": ref["alpha"]},
            variant="selection: torchunlearn keeps the best of its 12 draws by retain-minus-forget accuracy on the "
            "training loaders, i.e. it picks the draw that forgets most on the forget set itself; ours is one draw "
            "at the alpha it chose. On a class request the omitted output row leaves the forget accuracy to one "
            "draw's noise, so its FA is the minimum over draws (0 on every seed on the CPU parity checkpoint) and "
            "ours varies with the draw (3.5, 2.1, 17.4 on seeds 0-2); on a random request they agree",
            reference_settings="FisherForget.fit(alphas=[1e-9, 1e-8, 1e-7, 1e-6], repeat=3, omit_label=class) as "
            "its README calls it: batch-mean Fisher over the retain loader (128, last batch dropped), then 12 draws "
            "each evaluated on the retain and forget training loaders, the best retain-minus-forget kept (its "
            "seconds include the 12 draws and 24 evaluations; the Fisher pass alone is in the report's "
            "reference_extra); ours runs at the alpha it chose (one draw)",
        ),
    )
}
TORCHUNLEARN_METHODS = tuple(TU_PAIRS)


def kind_of(spec: str) -> str:
    return "class" if ForgetSpec.parse(spec).family == "class" else "random"


# ------------------------------------------------------------------------------------------------ running
def _metrics(ev: dict, seconds: float) -> dict[str, float]:
    return {"fa": ev["forget_acc"], "ra": ev["retain_acc"], "ta": ev["test_acc"], "mia": ev["mia"], "seconds": seconds}


def run_reference(
    pair: Pair, original: Classifier, data: Data, spec: str, seed: int, device: torch.device
) -> dict[str, float]:
    """The library's own function on a copy of ``original`` through the adapter; evaluated like ours."""
    kind = kind_of(spec)
    split = cumulative_split(data, ForgetSpec.parse(spec), seed, None, model=original.to(device).eval())
    model = copy.deepcopy(original).to(device)
    mean, std = model.normalize.mean, model.normalize.std
    tr = data.train
    idx = lambda t: t.to(tr.labels.device)
    forget = Triples(tr.images[idx(split.forget)], tr.labels[idx(split.forget)], mean, std)
    retain = Triples(tr.images[idx(split.retain)], tr.labels[idx(split.retain)], mean, std)
    full = torch.utils.data.ConcatDataset([retain, forget])
    b = supreme_batch(kind)
    loaders = {
        "forget": loader(forget, b, True, seed),
        "retain": loader(retain, b, True, seed + 1),
        "full": loader(full, b, True, seed + 2),
    }
    # what a full-class call also takes (SUPREME's unsir): the whole training set in stored order, the forgotten
    # classes (those with no retain image left), the retain classes' test images
    n = data.info.num_classes
    gone = torch.nonzero(torch.bincount(tr.labels[idx(split.retain)].cpu(), minlength=n) == 0).flatten().tolist()
    te = data.test
    keep = ~torch.isin(te.labels.cpu(), torch.tensor(gone, dtype=te.labels.dtype))
    context = {
        "num_labels": n,
        "classes": gone,
        "trainset": Triples(tr.images, tr.labels, mean, std),
        "retain_test": Triples(te.images[keep.to(te.images.device)], te.labels[keep.to(te.labels.device)], mean, std),
    }
    fn = supreme_function(pair.function)
    fabric = SingleProcessFabric(device)
    view = Prenormalized(model)
    torch.manual_seed(seed)  # the libraries draw from the global RNG (JiT's and UNSIR's noise, SUPREME's shuffles)
    synchronize(device)
    t0 = time.perf_counter()
    pair.call(fn, fabric, view, loaders, kind, context=context)
    synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    return _metrics(evaluate_split(model, data, split, device, seed), seconds)


def run_torchunlearn(
    pair: TUPair,
    original: Classifier,
    data: Data,
    spec: str,
    seed: int,
    device: torch.device,
    *,
    batch_size: int = TU_BATCH,
) -> tuple[dict[str, float], dict[str, Any]]:
    """torchunlearn's own class on a copy of ``original``: wrapped in its ``RobModel`` around ``Prenormalized``
    (its models take normalised images; its RobModel stores mean/std but does not apply them), fed its demo's
    loaders: ``(x, y)`` batches of 128, normalised, shuffled (seeded), the last incomplete batch dropped
    (``drop_last_train=True``), no augmentation (ours trains without). Evaluated like ours. Returns (metrics,
    what the reference chose)."""
    tu = torchunlearn_module()
    split = cumulative_split(data, ForgetSpec.parse(spec), seed, None, model=original.to(device).eval())
    model = copy.deepcopy(original).to(device)
    mean, std = model.normalize.mean, model.normalize.std
    tr = data.train
    n = data.info.num_classes

    def pairs(ix: torch.Tensor) -> torch.utils.data.TensorDataset:
        ix = ix.to(tr.labels.device)
        x = ((as_unit(tr.images[ix].cpu()) - mean.cpu()) / std.cpu()).contiguous()
        return torch.utils.data.TensorDataset(x, tr.labels[ix].cpu().long())

    loaders = {}
    for i, (name, ix) in enumerate((("Retain", split.retain), ("Forget", split.forget))):
        g = torch.Generator().manual_seed(int(seed) + i)
        loaders[name] = DataLoader(pairs(ix), batch_size=batch_size, shuffle=True, drop_last=True, generator=g)
    gone = torch.bincount(tr.labels[split.retain.to(tr.labels.device)].cpu(), minlength=n) == 0
    context = {"classes": torch.nonzero(gone).flatten().tolist(), "num_labels": n}
    rmodel = tu.RobModel(
        Prenormalized(model),
        n_classes=int(n),
        normalization_used={"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
    ).to(device)
    torch.manual_seed(seed)  # its random labels, its bad teacher's initialisation, dropout, FisherForget's draws
    quiet = io.StringIO()
    synchronize(device)
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(quiet):  # its tqdm bar (FisherForget's Fisher pass)
        info = pair.call(tu, rmodel, loaders, context)
    synchronize(device)
    seconds = time.perf_counter() - t0
    model.eval()
    return _metrics(evaluate_split(model, data, split, device, seed), seconds), info


def run_ours(
    pair: Pair | TUPair,
    original: Classifier,
    data: Data,
    spec: str,
    seed: int,
    device: torch.device,
    reference_info: dict[str, Any] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    if isinstance(pair, TUPair):
        opts, name = pair.ours(reference_info or {}), pair.ours_method
    else:
        opts, name = pair.ours(kind_of(spec), supreme_batch(kind_of(spec))), pair.method
    res = unlearn_request(original, data, spec, name, device=device, seed=seed, options=opts, quiet=True)
    r = res.report
    return _metrics(r, r["time"]["total_s"]), {"options": opts, "extra": r.get("method_extra", {})}


@dataclass
class ParityRow:
    method: str
    forget: str
    library: str
    seeds: list[int]
    ours: list[dict[str, float]] = field(default_factory=list)
    reference: list[dict[str, float]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    reference_settings: str = ""
    status: str = "compared"
    ours_method: str = ""  # our registered method, where its name is not the parity name
    reference_extra: list[dict[str, Any]] = field(default_factory=list)
    diverged: list[int] = field(default_factory=list)  # seeds on which ours refused its non-finite result


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), (float(t.std()) if len(values) > 1 else None)


def summarise(row: ParityRow) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": row.method,
        "forget": row.forget,
        "library": row.library,
        "seeds": row.seeds,
        "status": row.status,
        "variant": row.variant,
        "reference_settings": row.reference_settings,
        "our_options": row.options,
        "ours_method": row.ours_method or row.method,
    }
    if row.reference_extra:
        out["reference_extra"] = row.reference_extra
    for side, runs in (("ours", row.ours), ("reference", row.reference)):
        if runs:  # a row whose ours diverged still shows the reference's figures
            out[side] = {k: dict(zip(("mean", "std"), _mean_std([r[k] for r in runs]))) for k in runs[0]}
            out[side + "_per_seed"] = runs
    if row.diverged:
        out["ours_diverged_seeds"] = row.diverged
    if row.status != "compared":
        return out
    diff = {k: out["ours"][k]["mean"] - out["reference"][k]["mean"] for k in ("fa", "ra", "ta", "mia")}
    out["difference"] = diff
    out["within_tolerance"] = abs(diff["fa"]) <= TOLERANCE and abs(diff["ra"]) <= TOLERANCE
    out["explained"] = out["within_tolerance"] or bool(row.variant)
    return out


def run_parity(
    original: Classifier,
    data: Data,
    *,
    methods: list[str],
    specs: list[str],
    seeds: list[int],
    device: torch.device,
    log: Callable[[str], None] = lambda s: None,
    libraries: tuple[str, ...] = ("supreme", "torchunlearn"),
) -> list[dict[str, Any]]:
    """One row per (method, forget spec, library that has the method), ``libraries`` limiting which."""
    unknown = [m for m in methods if m not in PAIRS and m not in TU_PAIRS]
    if unknown:
        raise ConfigError(
            f"no parity pair for {', '.join(unknown)}; known: {', '.join(sorted(PAIRS))} (SUPREME), "
            f"{', '.join(TORCHUNLEARN_METHODS)} (torchunlearn)"
        )
    ok, why = supreme_status()
    tu_ok, tu_why = torchunlearn_status()
    rows = []
    for method in methods:
        for spec in specs:
            kind = kind_of(spec)
            if method in PAIRS and PAIRS[method].library == "supreme" and "supreme" in libraries:
                pair = PAIRS[method]
                row = ParityRow(
                    method,
                    spec,
                    "SUPREME 0.1.5",
                    list(seeds),
                    variant=pair.variant,
                    reference_settings=pair.reference_settings,
                )
                if kind not in pair.kinds:
                    row.status = f"not applicable ({method} forgets whole classes only)"
                elif pair.call is None:
                    row.status = f"not yet compared: {pair.pending}"
                elif not ok:
                    row.status = f"not compared: {why}"
                else:
                    for s in seeds:
                        log(f"{method} {spec} seed {s}: ours")
                        m, info = run_ours(pair, original, data, spec, s, device)
                        row.ours.append(m)
                        row.options = info["options"]
                        log(f"{method} {spec} seed {s}: reference")
                        try:
                            row.reference.append(run_reference(pair, original, data, spec, s, device))
                        except Exception as err:  # noqa: BLE001 - the library's own code failed: say so, go on
                            row.status = f"not compared: the reference failed: {type(err).__name__}: {err}"
                            break
                rows.append(summarise(row))
            if method in TU_PAIRS and "torchunlearn" in libraries:
                tp = TU_PAIRS[method]
                row = ParityRow(
                    method,
                    spec,
                    tu_why if tu_ok else "torchunlearn",
                    list(seeds),
                    variant=tp.variant,
                    reference_settings=tp.reference_settings,
                    ours_method=tp.ours_method,
                )
                if not tu_ok:
                    row.status = f"not compared: {tu_why}"
                else:
                    for s in seeds:  # the reference first: ours may follow what it chose (FisherForget's alpha)
                        log(f"{method} {spec} seed {s}: torchunlearn")
                        try:
                            ref, info = run_torchunlearn(tp, original, data, spec, s, device)
                        except Exception as err:  # noqa: BLE001 - the library's own code failed: say so, go on
                            row.status = f"not compared: the reference failed: {type(err).__name__}: {err}"
                            break
                        row.reference.append(ref)
                        if info:
                            row.reference_extra.append(info)
                        log(f"{method} {spec} seed {s}: ours ({tp.ours_method})")
                        try:
                            m, ours_info = run_ours(tp, original, data, spec, s, device, info)
                        except DivergedError as err:  # ours refused its own non-finite result: say so, keep going
                            row.options = tp.ours(info or {})
                            row.diverged.append(s)
                            row.status = f"ours diverged on seed(s) {row.diverged}: {err}"
                            continue
                        row.ours.append(m)
                        row.options = ours_info["options"]
                rows.append(summarise(row))
    return rows


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _cell(side: dict | None, k: str) -> str:
    if not side:
        return ""
    m, s = side[k]["mean"], side[k]["std"]
    if k == "seconds":
        return f"{m:.2f}" + (f" ± {s:.2f}" if s is not None else "")
    return _pct(m) + (f" ± {100 * s:.1f}" if s is not None else "")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Parity with the reference implementations (issue #32)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Commit: `{meta['git']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Checkpoint: `{meta['checkpoint']}` ({meta['setting']})  ",
        f"Seeds: {', '.join(map(str, meta['seeds']))} (a seed varies the forget set of a random request, the "
        "loaders' shuffles and the methods' noise; the checkpoint is fixed)  ",
        f"Figures: percent, mean ± sample std over the seeds; seconds: the method's own time in this process. "
        f"Tolerance: |ours - reference| <= {100 * TOLERANCE:.0f} points on FA and RA, or a named variant.",
        "",
        "| method | forget | library | ours FA | ours RA | ours TA | ours MIA | ours s | ref FA | ref RA | ref TA "
        "| ref MIA | ref s | ΔFA | ΔRA | ΔTA | ΔMIA | verdict | note |",
        "|---|---|---|" + "---|" * 16,
    ]
    for r in rows:
        ours_name = r.get("ours_method", r["method"])
        name = r["method"] if ours_name == r["method"] else f"{r['method']} (ours: {ours_name})"
        if r["status"] != "compared":
            cells = [
                _cell(r.get(side), k) for side in ("ours", "reference") for k in ("fa", "ra", "ta", "mia", "seconds")
            ]
            note = "; ".join(
                x for x in (r["variant"], r["reference_settings"] and "reference: " + r["reference_settings"]) if x
            )
            lines.append(
                f"| {name} | {r['forget']} | {r['library']} | "
                + " | ".join(cells)
                + " | | | | | "
                + f"{r['status']} | {note} |"
            )
            continue
        o, ref, d = r["ours"], r["reference"], r["difference"]
        verdict = "within 5" if r["within_tolerance"] else ("variant" if r["variant"] else "DIFFERS")
        note = "; ".join(x for x in (r["variant"], "reference: " + r["reference_settings"]) if x)
        if r.get("reference_extra"):
            note += "; reference chose: " + ", ".join(
                " ".join(f"{k} {v:.3g}" for k, v in e.items()) + f" (seed {s})"
                for s, e in zip(r["seeds"], r["reference_extra"])
            )
        lines.append(
            f"| {name} | {r['forget']} | {r['library']} | "
            + " | ".join(_cell(o, k) for k in ("fa", "ra", "ta", "mia", "seconds"))
            + " | "
            + " | ".join(_cell(ref, k) for k in ("fa", "ra", "ta", "mia", "seconds"))
            + " | "
            + " | ".join(f"{100 * d[k]:+.1f}" for k in ("fa", "ra", "ta", "mia"))
            + f" | {verdict} | {note} |"
        )
    lines += ["", "Our options per row (the reference's settings where our registered defaults differ):", ""]
    for r in rows:
        if r.get("our_options"):
            lines.append(f"- {r['method']} {r['forget']} ({r['library']}): `{r['our_options']}`")
    return "\n".join(lines) + "\n"
