"""EU-k, Exact Unlearning-k (Deep Unlearn ``munl/unlearning/exact_unlearning_k.py``, from the SCRUB notebooks;
docs/reference/unlearning-methods.md §1.5 item 11). CF-k (``cf_k.py``: the same blocks, freezing, SGD without momentum,
``CE + weight_decay/2 ||theta - theta0||^2``, eval() mode, step-decayed lr), except that the unfrozen blocks and the
classifier are RE-INITIALISED before fine-tuning on the retain set. As in the reference, theta0 of the proximal term
is the re-initialised state (the copy is taken after re-initialisation), so the penalty pulls towards the fresh
weights, not towards the original's.

Defaults are ExactUnlearningK's ORIGINAL_* constants (as CF-k's: lr 0.01, 10 epochs, batch 256, num_blocks 1,
decay_rate 0.1, weight_decay 0.1). Searched: num_blocks int [1, 10], decay_rate [0, 1] and the shared lr, weight
decay, batch size, epochs; the reference also searches ``sgda_learning_rate``, ``momentum`` and
``training_epoch_factor``, which its code never reads.

Options beyond CF-k's:

* ``init`` -- ``"fresh"`` (default): each re-initialised module takes the state (parameters AND buffers, so
  BatchNorm running statistics too) of the same module in a freshly initialised model of the architecture built
  from a seed derived from the request's (``ctx.fresh_model(ctx.derived_seed("eu-k"))``), i.e. the toolkit's own
  initialisation. Not the request's seed itself: the benchmark trains each original from the same seed as its
  request, so that seed would put back the original's own initial weights (a rewind, not a re-initialisation). ``"reference"``: Deep
  Unlearn's ``init_weights`` applied under the request's seed (Conv2d Kaiming-uniform fan_out/relu, Linear
  Xavier-uniform, biases 0, BatchNorm2d weight 1 / bias 0); it leaves BN running statistics (and GroupNorm
  affines) as trained, which is the reference's behaviour.
* ``augment`` -- the reference trains on R with its train-time transforms (random crop + flip for CIFAR, flip for
  MNIST): its originals were trained with them. This toolkit trains originals and retrained models WITHOUT
  augmentation (``dcforget.train.train_on``), and the only augmentation it offers is DSA (``dcforget.augment``,
  used by the condensed method), so the default follows the toolkit: ``"none"``. ``"dsa"`` uses DSA with the
  dataset's default strategy (as the condensed method: no flip for digits), or give a DSA strategy string
  (e.g. ``"crop_flip"``: DSA picks ONE family per batch, so that is crop or flip, not crop then flip).
* ``train_bn`` -- false (default, the reference): eval() mode throughout, so the re-initialised BatchNorm layers
  keep their initial running statistics (fresh init: mean 0, var 1). True puts the re-initialised blocks and the head
  in train mode so their BN statistics are re-estimated on R (and the head's dropout is active).
"""

from __future__ import annotations

from torch import nn

from dcforget.augment import DEFAULT_STRATEGY, DIGITS_STRATEGY, DSA
from dcforget.errors import ConfigError
from dcforget.models import Classifier
from dcforget.runtime import seeded

from .base import UnlearnContext, register
from .cf_k import CF_K_SPACE, finetune_last_k
from .common import require


def _reference_init(m: nn.Module) -> None:
    """Deep Unlearn's ``munl.models.init_weights``."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_uniform_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


def reinitialise(ctx: UnlearnContext, model: Classifier, modules: list[nn.Module], init: str) -> None:
    """Re-initialise ``modules`` of ``model`` in place (``init``: "fresh" or "reference", see the module docstring)."""
    if init == "fresh":
        fresh = ctx.fresh_model(ctx.derived_seed("eu-k"))
        names = {id(m): n for n, m in model.named_modules()}
        for m in modules:
            m.load_state_dict(fresh.get_submodule(names[id(m)]).state_dict())
    elif init == "reference":
        with seeded(ctx.seed, ctx.device):
            for m in modules:
                m.apply(_reference_init)
    else:
        raise ConfigError(f"option init must be fresh or reference, got {init!r}")
    ctx.extra["init"] = init


def _augmenter(ctx: UnlearnContext, name):
    if not isinstance(name, str):
        raise ConfigError(f"option augment must be none, dsa or a DSA strategy, got {name!r}")
    if name == "none":
        return None
    info = ctx.data.info
    strategy = name
    if name == "dsa":
        strategy = DIGITS_STRATEGY if info.name in ("mnist", "svhn") else DEFAULT_STRATEGY
    ctx.extra["augment"] = strategy
    return DSA(info.image_shape, info.mean, strategy).to(ctx.device)


@register(
    "eu-k",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/exact_unlearning_k.py (from meghdadk/SCRUB notebooks)",
    summary="re-initialise the last k blocks + classifier and retrain them on retain (CF-k's recipe)",
    space=CF_K_SPACE,
    epochs=10,
    batch_size=256,
    lr=0.01,
    weight_decay=0.1,
    decay_rate=0.1,
    num_blocks=1,
    freeze_stem=False,
    init="fresh",
    augment="none",
    train_bn=False,
)
def eu_k(ctx: UnlearnContext):
    o = ctx.options
    require(o, "eu-k", choices={"init": ("fresh", "reference")}, flags=("train_bn",))
    return finetune_last_k(
        ctx,
        desc="eu-k",
        reinit=lambda model, modules: reinitialise(ctx, model, modules, o["init"]),
        augment=_augmenter(ctx, o["augment"]),
        train_reinit_bn=o["train_bn"],
    )
