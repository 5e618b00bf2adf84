"""U-LiRA (Hayes et al., arXiv 2403.01218) with Deep Unlearn's protocol (docs/reference/unlearning-methods.md §1.3,
§2.6): a per-example likelihood-ratio attack that asks whether an unlearned model can be told from a retrained one.

Protocol. The pool is the (capped) training set, N examples. Split s (of ``splits``) draws a random half of it;
forget set (s, f) (``forget_sets`` per split) draws ``forget_fraction`` of that half. Per split, one ``original``
model trains on the half; per (s, f), a *reference* model retrains from scratch on the half minus the forget set,
a second, independent retraining is the ``retrained`` model under test (its seed differs, so its null test can
fail), and every unlearning method under test unlearns (s, f) from the split's original. Each model's logit-scaled
confidence log p_y - log(1 - p_y) on every pool example is kept. An example is forgotten in about
splits * forget_sets * forget_fraction / 2 models (64 x 10 x 0.1 / 2 = 32 in Deep Unlearn's setting).

Statistic, for a variant V (``original``, ``retrained`` or a method) and a target model (s, f), leaving split s
out of every fit: for each example i of forget set (s, f), a Gaussian fitted to V's confidences on i in the
models where i was forgotten (``forgotten``: the (s', f') with i in their forget set), and one fitted to the
reference models' confidences on i where i was outside the split's half (``never``). The score of a confidence x
is log N(x; mu_f, sd_f) - log N(x; mu_n, sd_n). Means are per example; a standard deviation is per example where
the example has at least ``min_observations`` observations on that side, and pooled over the examples otherwise
(LiRA's fixed variance; the report says how often each was used). Positives: V(s, f)'s scores on its forget
examples; negatives: the reference (s, f)'s scores on the same examples (it never saw them). AUC 0.5 means V cannot
be told from retraining; ``original`` shows what the attack finds when nothing was unlearned. Deep Unlearn fits
Gaussians to 0/1 correctness in-sample; this follows Hayes et al. (logit-scaled confidence, held-out split).

Uncertainty: 95% percentile intervals from a cluster bootstrap over splits. The forget sets of one split share
its original, its half and its leave-one-split-out fit, so they are not independent draws; a split is the unit that
varies. Each replicate draws ``splits`` splits with replacement, weighs every split by how often it was drawn,
*refits* both Gaussians of every example from the drawn splits (the fits' own uncertainty is propagated), rescores,
and recomputes AUC, accuracy and TPR at low FPR over the drawn splits' pairs (a pair counts as often as its split
was drawn). A draw misses about 37% of the splits, so its fits rest on fewer distinct splits than the data's and
its statistic is lower where the attack has signal; the interval is the replicates' 2.5-97.5% range re-centred from
their median onto the point estimate (the report gives each shift). The calibration test (tests/test_ulira.py) checks on simulated null signals with split-level
correlation that the 95% interval holds 0.5 in about 95% of repetitions, where resampling target models as if
independent covers it far less often.

Engine. Splits are grouped (``splits_per_job`` each) into jobs of :mod:`dcforget.jobs`. Per group, a
``references`` job trains the splits' originals, references and retrainings (batched with
:func:`dcforget.batched.fit_many` where the architecture allows, else one by one), and one job per method trains
the originals again (same seeds and recipe: the same models where training is deterministic, as the batched CPU
path is) and unlearns every forget set from them; each returns its confidences.
Results are content-addressed in a job store and read back on a rerun, so attacking another method, or one method
with other options, costs its originals and its unlearning, not the 2 x splits x forget sets retrainings (about
85% of a run's training). The jobs run on any executor (in process, a local pool, Ray).

Seeds: every random draw has its own seed, ``derive_seed(seed, split, forget_set, role)`` (SHA-256 of the four),
with roles ``split`` (the half and its forget sets), ``original``, ``reference`` and ``under-test`` (the
``retrained`` model and every method). So the under-test models never share a seed with a reference model.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcforget.datasets import Data, default_data_dir, load_data
from dcforget.errors import ConfigError
from dcforget.jobs import Executor, JobStore, run_jobs
from dcforget.models import MODELS
from dcforget.progress import bar
from dcforget.runtime import generator, resolve_device
from dcforget.train import TrainConfig, train_on

from .bootstrap import roc_stats, weighted_curves
from .epsilon import confidences, logit_confidence

REFERENCE_VARIANTS = ("original", "retrained")
JOB_VERSION = "ulira/2"  # 2: the references and each method are jobs of their own (a method job carries its defaults)


def derive_seed(seed: int, split: int, forget_set: int, role: str) -> int:
    digest = hashlib.sha256(f"ulira/{seed}/{split}/{forget_set}/{role}".encode()).digest()
    return int.from_bytes(digest[:5], "big")  # 40 bits: room for the arithmetic methods do on a seed within int64


@dataclass
class UliraSetup:
    """Everything that decides the models (the jobs' specs are made from it)."""

    dataset: str
    arch: str = "mlp"
    train: dict[str, Any] = field(default_factory=lambda: {"epochs": 30})
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_class: int | None = None
    data_seed: int = 0
    splits: int = 64
    forget_sets: int = 4
    forget_fraction: float = 0.1
    seed: int = 0
    clusters: int | None = None  # FDM buckets per class for methods that unlearn from a condensed set
    splits_per_job: int = 8
    batched: bool = True  # train a job's models together (torch.func) where the architecture allows
    forget_size: int | None = None  # images per forget set (a person's request), instead of forget_fraction
    targets: int | None = None  # forget sets drawn from this many pool examples (fixed by the seed): see plan_split

    def __post_init__(self) -> None:
        from unlearn.methods import METHODS
        from unlearn.policy import method_label

        MODELS.get(self.arch)
        TrainConfig.from_dict(self.train)
        for name, value, low in (
            ("splits", self.splits, 3),
            ("forget_sets", self.forget_sets, 1),
            ("splits_per_job", self.splits_per_job, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.forget_fraction, (int, float)) and 0 < self.forget_fraction < 1):
            raise ConfigError(f"forget_fraction must be in (0, 1), got {self.forget_fraction!r}")
        for name in ("forget_size", "targets"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {v!r}")
        if self.targets is not None and self.forget_size is None:
            raise ConfigError("targets goes with forget_size (forget sets of that many images drawn from the targets)")
        if self.targets is not None and self.targets < 2 * self.forget_size:
            raise ConfigError(
                f"targets ({self.targets}) must be at least twice forget_size ({self.forget_size}): a half holds "
                "about half of them"
            )
        for m in self.methods:
            if METHODS.get(method_label(m)[0]).trains_fresh:
                raise ConfigError(f"method {m!r} retrains from scratch: it is the 'retrained' reference already")
            if self.builds_condensed(m) and not self.clusters:
                raise ConfigError(f"method {m!r} works from a condensed set: give clusters (--clusters K)")

    def job_specs(self) -> list[dict[str, Any]]:
        """Per group of ``splits_per_job`` splits: one ``references`` job (the originals' confidences, the references
        and the retrainings), keyed without the methods, then one job per method (it trains the group's originals
        again, the same seeds, and unlearns from them). Attacking another method, or the same one with other
        options, reads the 2 x splits x forget_sets retrainings back instead of training them again."""
        base = {k: v for k, v in asdict(self).items() if k not in ("splits", "splits_per_job", "methods", "clusters")}
        for k in ("forget_size", "targets"):  # unset: left out
            if base[k] is None:
                del base[k]
        groups = [
            list(range(a, min(a + self.splits_per_job, self.splits)))
            for a in range(0, self.splits, self.splits_per_job)
        ]
        refs = [{**base, "part": "references", "split_ids": ids} for ids in groups]
        methods = [
            {
                **base,
                "part": "method",
                "method": label,
                "options": options,
                "clusters": self.clusters if self.builds_condensed(label) else None,  # in the key only where used
                "defaults": self.defaults_digest(label),  # a changed default reads no cached model back
                "split_ids": ids,
            }
            for label, options in self.methods.items()
            for ids in groups
        ]
        return refs + methods

    @staticmethod
    def builds_condensed(label: str) -> bool:
        """Whether the method a label names works from an FDM file built per split: a condensed method, or any
        method served the reduced retain set (``NAME (reduced)``)."""
        from unlearn.methods import METHODS
        from unlearn.policy import method_label

        name, retain = method_label(label)
        return METHODS.get(name).needs_condensed or retain == "reduced"

    @staticmethod
    def defaults_digest(label: str) -> str:
        """The digest of the registered defaults of the method a label names (``Method.defaults_digest``)."""
        from unlearn.methods import METHODS
        from unlearn.policy import method_label

        return METHODS.get(method_label(label)[0]).defaults_digest

    @property
    def variants(self) -> list[str]:
        return [*REFERENCE_VARIANTS, *self.methods]


# ------------------------------------------------------------------------------------------------ the jobs
@lru_cache(maxsize=2)
def _load(dataset: str, data_dir: str | None, per_class: int | None, data_seed: int, device: str) -> Data:
    return load_data(dataset, data_dir, per_class, seed=data_seed, val_fraction=0.0).to(torch.device(device))


def plan_split(
    n: int,
    split: int,
    forget_sets: int,
    forget_fraction: float,
    seed: int,
    forget_size: int | None = None,
    targets: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The split's half (sorted indices [n // 2]) and its forget sets ([forget_sets, k] positions into the pool).

    k is ``forget_fraction`` of the half, or ``forget_size`` images. Small forget sets drawn from the whole half would
    leave an example forgotten in almost no model (64 splits x 4 sets x 10 images / 1,000 = 2.6), too few for its
    Gaussian; with ``targets`` the forget sets are drawn from a fixed set of that many pool examples (chosen once
    from the seed, the same for every split): each target is then forgotten in about splits x forget_sets x k /
    targets models. A half holding fewer than k targets (rare when targets >= 2k) fills the set from the rest of it."""
    g = generator(derive_seed(seed, split, 0, "split"))
    half = torch.randperm(n, generator=g)[: n // 2].sort().values
    k = int(forget_size) if forget_size is not None else max(1, int(round(forget_fraction * len(half))))
    if k > len(half):
        raise ConfigError(f"forget sets of {k} images do not fit in a half of {len(half)}")
    if targets is None:
        forgets = [half[torch.randperm(len(half), generator=g)[:k]] for _ in range(forget_sets)]
    else:
        chosen = torch.zeros(n, dtype=torch.bool)
        chosen[target_examples(n, targets, seed)] = True
        inside, rest = half[chosen[half]], half[~chosen[half]]
        forgets = [
            torch.cat([inside[torch.randperm(len(inside), generator=g)], rest[torch.randperm(len(rest), generator=g)]])[
                :k
            ]
            for _ in range(forget_sets)
        ]
    return half, torch.stack([f.sort().values for f in forgets])


def target_examples(n: int, targets: int, seed: int) -> torch.Tensor:
    """The pool examples small forget sets are drawn from (sorted; the same for every split of ``seed``)."""
    if targets > n:
        raise ConfigError(f"targets ({targets}) exceeds the pool ({n} examples)")
    return torch.randperm(n, generator=generator(derive_seed(seed, 0, 0, "targets")))[:targets].sort().values


def _without(half: torch.Tensor, forget: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(int(half.max()) + 1, dtype=torch.bool)
    keep[forget] = False
    return half[keep[half]]


def _train(
    data: Data,
    arch: str,
    cfg: TrainConfig,
    subsets: list[torch.Tensor],
    seeds: list[int],
    device: torch.device,
    batched: bool,
) -> tuple[torch.Tensor, Any]:
    """Train one model per (subset, seed): (their confidences on the pool [M, N], model(m) -> nn.Module)."""
    images, labels = data.train.images, data.train.labels
    if batched:
        from dcforget.batched import fit_many

        stack = fit_many(arch, data, torch.stack(subsets), seeds, cfg, device=device)
        logits = stack.logits(images, bf16=cfg.bf16)  # [M, N, C]
        conf = torch.stack([logit_confidence(lg.cpu(), labels.cpu()) for lg in logits])
        return conf, stack.model
    models = [
        train_on(data, arch, cfg, seed=s, device=device, index=sub, quiet=True).model for sub, s in zip(subsets, seeds)
    ]
    conf = torch.stack([confidences(m, images, labels, device) for m in models])
    return conf, models.__getitem__


def batchable(arch: str, data: Data) -> bool:
    from dcforget.batched import _check_batchable
    from dcforget.train import build_model

    try:
        _check_batchable(build_model(arch, data, 0))
        return True
    except ConfigError:
        return False


def shadow_job(spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One job of a :class:`UliraSetup` on the splits ``spec["split_ids"]`` (see the module's docstring):
    ``part`` ``references`` trains the originals, references and retrainings; ``method`` trains the originals (the
    same seeds and recipe) and unlearns every forget set from them with ``spec["method"]``."""
    device = resolve_device(context.get("device"))
    data = _load(spec["dataset"], context.get("data_dir"), spec["per_class"], spec["data_seed"], str(device))
    cfg = TrainConfig.from_dict(spec["train"])
    arch, seed, ids, n_f = spec["arch"], spec["seed"], spec["split_ids"], spec["forget_sets"]
    batched = spec["batched"] and batchable(arch, data)
    n = len(data.train)
    plans = [
        plan_split(n, s, n_f, spec["forget_fraction"], seed, spec.get("forget_size"), spec.get("targets")) for s in ids
    ]
    seconds: dict[str, float] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
        return out

    halves = [h for h, _ in plans]
    method = spec.get("method")
    conf_o, original = timed(
        "original" if method is None else f"{method}:original",
        _train,
        data,
        arch,
        cfg,
        halves,
        [derive_seed(seed, s, 0, "original") for s in ids],
        device,
        batched,
    )
    if method is not None:
        conf = _unlearn_all(spec, data, plans, original, device, timed)
        return {"split_ids": ids, "method": method, f"conf_{method}": conf, "seconds": seconds, "batched": batched}
    retains = [_without(h, f) for h, fs in plans for f in fs]
    pairs = [(s, f) for s in ids for f in range(n_f)]
    conf_ref, _ = timed(
        "reference",
        _train,
        data,
        arch,
        cfg,
        retains,
        [derive_seed(seed, s, f, "reference") for s, f in pairs],
        device,
        batched,
    )
    conf_ret, _ = timed(
        "retrained",
        _train,
        data,
        arch,
        cfg,
        retains,
        [derive_seed(seed, s, f, "under-test") for s, f in pairs],
        device,
        batched,
    )
    out: dict[str, Any] = {
        "split_ids": ids,
        "in_train": torch.zeros(len(ids), n, dtype=torch.bool),
        "in_forget": torch.zeros(len(ids), n_f, n, dtype=torch.bool),
        "conf_original": conf_o,
        "conf_reference": conf_ref.view(len(ids), n_f, n),
        "conf_retrained": conf_ret.view(len(ids), n_f, n),
    }
    for b, (half, forgets) in enumerate(plans):
        out["in_train"][b, half] = True
        for f in range(n_f):
            out["in_forget"][b, f, forgets[f]] = True
    out["seconds"] = seconds
    out["batched"] = batched
    return out


def _unlearn_all(spec, data, plans, original, device, timed) -> torch.Tensor:
    """The confidences [splits, forget sets, N] of ``spec["method"]`` (a label: NAME, or NAME (full|reduced) for
    its retain source) unlearning every forget set of every split from the split's original."""
    from unlearn.policy import method_label
    from unlearn.request import unlearn_request

    label, options, seed, ids = spec["method"], spec["options"], spec["seed"], spec["split_ids"]
    n, n_f = len(data.train), spec["forget_sets"]
    method, retain = method_label(label)
    needs = UliraSetup.builds_condensed(label)
    conf_m = torch.zeros(len(ids), n_f, n)
    for b, (s, (half, forgets)) in enumerate(zip(ids, plans)):
        orig = original(b).to(device).eval()
        # the split's world is its half: the request forgets positions within it; the method trains on the half
        # only, and the other half (never seen by this split's models) is its validation split, the held-out
        # images a method may measure losses on (the default's forget target)
        rest = torch.ones(n, dtype=torch.bool)
        rest[half] = False
        rest = torch.nonzero(rest).flatten()
        world = replace(
            data,
            train=data.train.subset(half.to(data.train.labels.device)),
            source_indices=data.source_indices[half.to(data.source_indices.device)],
            val=data.train.subset(rest.to(data.train.labels.device)),
            val_source_indices=data.source_indices[rest.to(data.source_indices.device)],
            _fingerprint=None,
        )
        condensed = None
        if needs:
            from condense.build import build_condensed

            condensed = timed(
                f"{label}:condense",
                lambda: (
                    build_condensed(
                        world,
                        "fdm",
                        orig,
                        device=device,
                        seed=derive_seed(seed, s, 0, "under-test"),
                        clusters=spec["clusters"],
                        quiet=True,
                    ).condensed
                ),
            )
        position = torch.full((n,), -1, dtype=torch.long)
        position[half] = torch.arange(len(half))
        for f in range(n_f):
            with tempfile.TemporaryDirectory() as tmp:
                file = Path(tmp) / "forget.txt"
                file.write_text("\n".join(map(str, position[forgets[f]].tolist())))
                res = timed(
                    label,
                    lambda: unlearn_request(
                        orig,
                        world,
                        f"indices:{file}",
                        method,
                        device=device,
                        seed=derive_seed(seed, s, f, "under-test"),
                        options=options,
                        quiet=True,
                        condensed=condensed,
                        retain=retain,
                    ),
                )
            conf_m[b, f] = confidences(res.model, data.train.images, data.train.labels, device)
    return conf_m


def run(
    setup: UliraSetup,
    store: str | os.PathLike,
    *,
    executor: Executor | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    quiet: bool = True,
):
    """Run (or read back) every job of ``setup``; returns the :class:`dcforget.jobs.GridRun`."""
    specs = setup.job_specs()
    with bar(total=len(specs), desc="U-LiRA jobs", quiet=quiet, unit="job") as progress:
        return run_jobs(
            shadow_job,
            specs,
            JobStore(store),
            executor=executor,
            version=JOB_VERSION,
            context={"data_dir": str(Path(data_dir or default_data_dir()).resolve()), "device": device},
            on_result=lambda i: progress.update(1),
        )


# ------------------------------------------------------------------------------------------------ the attack
@dataclass
class Signals:
    """Every job's results, concatenated over splits."""

    in_train: torch.Tensor  # bool [S, N]
    in_forget: torch.Tensor  # bool [S, F, N]
    conf: dict[str, torch.Tensor]  # variant -> float64 [S, F, N] (original: repeated over F)
    reference: torch.Tensor  # float64 [S, F, N]

    @classmethod
    def gather(cls, results: list[dict[str, Any]], variants: list[str]) -> "Signals":
        """Every variant's confidences in the references jobs' split order (a method's job of a group of splits is
        matched to that group's references job)."""
        refs = [r for r in results if "method" not in r]
        by_group = {(r["method"], tuple(r["split_ids"])): r for r in results if "method" in r}
        for v in variants:
            if v in REFERENCE_VARIANTS:
                continue
            missing = [r["split_ids"] for r in refs if (v, tuple(r["split_ids"])) not in by_group]
            if missing:
                raise ValueError(f"no job of {v!r} for splits {missing[0]}")

        def cat(key):
            if key.startswith("conf_") and key[5:] not in REFERENCE_VARIANTS and key != "conf_reference":
                parts = [by_group[(key[5:], tuple(r["split_ids"]))][key] for r in refs]
            else:
                parts = [r[key] for r in refs]
            return torch.from_numpy(np.concatenate(parts))

        in_forget = cat("in_forget")
        f = in_forget.shape[1]
        conf = {"original": cat("conf_original").double()[:, None].expand(-1, f, -1)}
        conf.update({v: cat(f"conf_{v}").double() for v in variants if v != "original"})
        return cls(cat("in_train"), in_forget, conf, cat("conf_reference").double())


def _moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per split: count, sum and sum of squares of x over its forget sets where mask ([S, F, N] -> [S, N])."""
    m = mask.double()
    return m.sum(1), (x * m).sum(1), (x * x * m).sum(1)


def _gaussian(count, total, squares, min_obs, weights: torch.Tensor | None = None):
    """Leave-one-split-out per-example mean and standard deviation ([S, N]), and where the per-example one was used.
    ``count/total/squares`` are per-split moments; row s of the result excludes split s. ``weights`` [B, S]: how
    often each split counts in each of B cluster-bootstrap draws (row s then excludes every copy of split s; the
    results are [B, S, N]); None: once each."""
    if weights is not None:
        w = weights[..., None]
        count, total, squares = count * w, total * w, squares * w
    c = count.sum(-2, keepdim=True) - count
    s1 = total.sum(-2, keepdim=True) - total
    s2 = squares.sum(-2, keepdim=True) - squares
    mu = s1 / c.clamp_min(1)
    ss = (s2 - s1 * mu).clamp_min(0)  # sum of squared residuals per example
    own = ss / (c - 1).clamp_min(1)
    pooled = ss.sum(-1, keepdim=True) / (c - 1).clamp_min(0).sum(-1, keepdim=True).clamp_min(1)
    use_own = c >= min_obs
    sd = torch.where(use_own, own, pooled.expand_as(own)).sqrt().clamp_min(1e-6)
    return mu, sd, c, use_own


def _log_pdf(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - torch.log(sd)


class _Fit:
    """The attack's fits and scores on one variant, for any weighting of the splits (the data as observed, or
    cluster-bootstrap draws). Scores are computed only at the forgotten positions (s, f, i), the pairs' candidates."""

    def __init__(self, sig: Signals, variant: str, min_observations: int):
        self.min_obs = min_observations
        v = sig.conf[variant]
        f_count = sig.in_forget.shape[1]
        never = (~sig.in_train)[:, None, :].expand(-1, f_count, -1)
        self.forgotten_moments = _moments(v, sig.in_forget)
        self.never_moments = _moments(sig.reference, never)
        self.where = sig.in_forget.nonzero(as_tuple=True)  # (s, f, i) of every forgotten position
        self.v, self.ref = v[self.where], sig.reference[self.where]

    def scores(self, weights: torch.Tensor | None = None):
        """(member scores, non-member scores, their split, mask of scorable pairs, the fits: mean, sd, count and
        whether the per-example sd was used, per side, ``_f`` forgotten and ``_n`` never seen); with ``weights``
        [B, S] every output but the splits has a leading replicate dimension."""
        mu_f, sd_f, c_f, own_f = _gaussian(*self.forgotten_moments, self.min_obs, weights)
        mu_n, sd_n, c_n, own_n = _gaussian(*self.never_moments, self.min_obs, weights)
        s, _, i = self.where
        ok = (c_f[..., s, i] > 0) & (c_n[..., s, i] > 0)  # forgotten here, observable in other splits on both sides
        if weights is not None:
            ok &= weights[:, s] > 0

        def score(x):
            return _log_pdf(x, mu_f[..., s, i], sd_f[..., s, i]) - _log_pdf(x, mu_n[..., s, i], sd_n[..., s, i])

        fits = {"mu_f": mu_f, "sd_f": sd_f, "c_f": c_f, "own_f": own_f, "mu_n": mu_n, "sd_n": sd_n, "c_n": c_n}
        return score(self.v), score(self.ref), s, ok, {**fits, "own_n": own_n}


def cluster_bootstrap(
    fit: _Fit, s_count: int, *, bootstrap: int, seed: int = 0, chunk: int = 25, point: dict[str, float] | None = None
) -> dict[str, Any]:
    """95% intervals of :func:`attacks.bootstrap.roc_stats` from a bootstrap over splits that refits the Gaussians
    in every replicate (module docstring): the replicates' 2.5-97.5% range, re-centred from their median onto the
    ``point`` estimates where given; ``chunk`` replicates are computed together."""
    g = torch.Generator().manual_seed(seed)
    reps: dict[str, list[torch.Tensor]] = {}
    aligned: list[torch.Tensor] = []  # every draw's AUC, NaN where it scored nothing: draw k is the same splits for
    for start in range(0, bootstrap, chunk):  # every variant of a report (same seed), so two variants pair up
        b = min(chunk, bootstrap - start)
        draws = torch.randint(s_count, (b, s_count), generator=g)
        w = torch.zeros(b, s_count, dtype=torch.float64).scatter_add_(
            1, draws, torch.ones(b, s_count, dtype=torch.float64)
        )
        pos, neg, s, ok, _ = fit.scores(w)
        keep = ok.any(1)  # a draw of too few distinct splits leaves nothing scorable: it gives no replicate
        pw = torch.where(ok, w[:, s], torch.zeros_like(pos))[keep]  # a pair counts as often as its split was drawn
        zero = torch.zeros_like(pos)
        scores = torch.cat([torch.where(ok, pos, zero), torch.where(ok, neg, zero)], 1)[keep]
        is_pos = torch.cat([torch.ones(len(s), dtype=torch.bool), torch.zeros(len(s), dtype=torch.bool)])
        for k, v in roc_stats(*weighted_curves(scores, is_pos, torch.cat([pw, pw], 1))).items():
            reps.setdefault(k, []).append(v)
            if k == "auc":
                aligned.append(torch.full((b,), float("nan"), dtype=torch.float64).masked_scatter_(keep, v.double()))
    # refitting on a draw that repeats some splits and misses others (about 37% of them) fits every example from
    # fewer distinct splits than the data have, which lowers each replicate's statistic when the attack has signal
    # (measured: the original's AUC 0.990 against replicates centred near 0.987): the percentile interval of the
    # replicates is re-centred on the point estimate, keeping its width and skew (``point`` gives the estimates)
    q = torch.tensor([0.025, 0.5, 0.975], dtype=torch.float64)
    out: dict[str, Any] = {}
    for k, v in reps.items():
        lo, mid, hi = torch.quantile(torch.cat(v).double(), q).tolist()
        shift = point[k] - mid if point is not None and k in point else 0.0
        out[f"{k}_ci"] = [max(0.0, lo + shift), min(1.0, hi + shift)]
        out[f"{k}_bootstrap_shift"] = shift
    every = torch.cat(aligned).tolist() if aligned else []
    return {
        **out,
        "bootstrap_replicates_scored": int(sum(len(v) for v in reps.get("auc", []))),
        "auc_replicates": [None if math.isnan(x) else x for x in every],  # by draw; see paired_auc_difference
    }


def paired_auc_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """AUC of attack entry ``a`` minus that of ``b`` (two variants of U-LiRA reports with the same splits, seed and
    replicates: the same pool, so the k-th bootstrap draw is the same splits for both) with a 95% interval from the
    paired replicates: the 2.5-97.5% range of the per-draw differences, re-centred from their median onto the point
    difference as the single-variant intervals are. Pairing removes what the two variants share (which splits were
    drawn), so the interval is narrower than two separate intervals suggest."""

    def number(v) -> bool:
        try:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        except OverflowError:  # an integer too large for a float
            return False

    for e in (a, b):
        if not isinstance(e, dict) or not number(e.get("auc")):
            raise ConfigError("an attack entry has no AUC: not a U-LiRA report's variant")
        reps = e.get("auc_replicates")
        if not reps:
            raise ConfigError(
                "a report has no per-draw AUCs (auc_replicates): rerun it with this version (jobs are read back)"
            )
        if not isinstance(reps, list) or not all(x is None or number(x) for x in reps):
            raise ConfigError("auc_replicates must be a list of numbers or nulls")
    ra, rb = a["auc_replicates"], b["auc_replicates"]
    if len(ra) != len(rb):
        raise ConfigError(f"the reports drew {len(ra)} and {len(rb)} bootstrap replicates: they cannot be paired")
    diffs = torch.tensor([x - y for x, y in zip(ra, rb) if x is not None and y is not None], dtype=torch.float64)
    if len(diffs) < 2:
        raise ConfigError("fewer than 2 bootstrap draws scored both variants: nothing to pair")
    point = float(a["auc"]) - float(b["auc"])
    lo, mid, hi = torch.quantile(diffs, torch.tensor([0.025, 0.5, 0.975], dtype=torch.float64)).tolist()
    return {
        "difference": point,
        "difference_ci": [lo + point - mid, hi + point - mid],
        "share_below_zero": float((diffs < 0).double().mean()),  # of the raw draws (the interval is re-centred)
        "replicates_paired": len(diffs),
    }


BOOTSTRAP_METHOD = {
    "over": "splits (cluster bootstrap: a split's forget sets are resampled together)",
    "refit": "both Gaussians of every example refitted in each replicate",
    "interval": "95% percentile of the replicates, re-centred from their median onto the point "
    "estimate (refitting on draws that repeat splits fits from fewer distinct splits, "
    "which lowers every replicate; *_bootstrap_shift says by how much)",
}


def diagnosis(fit: _Fit, ok: torch.Tensor, fits: dict[str, torch.Tensor]) -> dict[str, float | None]:
    """Why a variant can be told apart, at the scored positions: where its confidence sits in the never-seen fit of
    the same example (``shift``: the mean of (x - mu_n) / sd_n; > 0 under-forgets, < 0 over-forgets), how spread its
    own per-example fit is against the never-seen one (``spread``: the median of sd_f / sd_n; 1 matches, > 1 is
    scattered across the models, < 1 collapsed), and how well its per-example means follow the never-seen ones
    (``mean_correlation``: Pearson over the scored positions; None where either side is constant). ``fits`` are the
    attack's own, as :meth:`_Fit.scores` returns them (leave-one-split-out; an example with fewer than ``min_observations`` observations on a side takes
    that side's pooled sd, as the attack does, and the report's ``observations`` say how often). Retraining gives
    about 0, 1 and the reference models' own agreement. For Gaussians, equal means and an sd ratio r alone give the
    likelihood-ratio test an AUC of about 2 arctan(max(r, 1/r)) / pi (1.5: 0.63); a shift d alone with equal sds
    about Phi(|d| / sqrt 2) (0.5: 0.64)."""
    mu_f, sd_f, mu_n, sd_n = fits["mu_f"], fits["sd_f"], fits["mu_n"], fits["sd_n"]
    s, _, i = fit.where
    x, mf, sf, mn, sn = fit.v[ok], mu_f[s, i][ok], sd_f[s, i][ok], mu_n[s, i][ok], sd_n[s, i][ok]
    z = (x - mn) / sn
    corr = None
    if len(x) > 1 and float(mf.std()) > 0 and float(mn.std()) > 0:
        corr = float(torch.corrcoef(torch.stack([mf, mn]))[0, 1])
    return {
        "shift": float(z.mean()),
        "shift_median": float(z.median()),
        "spread": float((sf / sn).median()),
        "mean_correlation": corr,
    }


def attack(
    sig: Signals, variant: str, *, min_observations: int = 8, bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Leave-one-split-out U-LiRA on ``variant``; see the module's docstring."""
    if variant not in sig.conf:
        raise ConfigError(f"no {variant!r} models; there are: {', '.join(sig.conf)}")
    s_count, f_count, n = sig.in_forget.shape
    if s_count < 3:
        raise ConfigError("U-LiRA needs at least 3 splits")
    fit = _Fit(sig, variant, min_observations)
    pos, neg, s, ok, fits = fit.scores()
    c_f, c_n, own_f, own_n = fits["c_f"], fits["c_n"], fits["own_f"], fits["own_n"]
    if not bool(ok.any()):
        raise ConfigError(
            f"no forget example was forgotten in another split and unseen in a third: use more "
            f"splits (have {s_count}) or forget sets"
        )
    scores = torch.cat([pos[ok], neg[ok]])
    is_pos = torch.cat([torch.ones(int(ok.sum()), dtype=torch.bool), torch.zeros(int(ok.sum()), dtype=torch.bool)])
    stats = {
        k: float(v[0])
        for k, v in roc_stats(*weighted_curves(scores, is_pos, torch.ones(1, len(scores), dtype=torch.float64))).items()
    }
    if bootstrap:
        stats.update(cluster_bootstrap(fit, s_count, bootstrap=bootstrap, seed=seed, point=dict(stats)))
    where = torch.zeros(s_count, n, dtype=torch.bool)
    where[s[ok], fit.where[2][ok]] = True  # [S, N]: the examples scored in split s
    return {
        "variant": variant,
        "splits": s_count,
        "forget_sets": f_count,
        "target_models": s_count * f_count,
        "pairs": int(ok.sum()),
        **stats,
        "observations": {
            "forgotten_median": float(c_f[where].median()),
            "never_median": float(c_n[where].median()),
            "min_for_own_variance": min_observations,
            "own_variance_share_forgotten": float(own_f[where].double().mean()),
            "own_variance_share_never": float(own_n[where].double().mean()),
        },
        "diagnosis": diagnosis(fit, ok, fits),
    }


def report(setup: UliraSetup, grid, *, min_observations: int = 8, bootstrap: int = 1000) -> dict[str, Any]:
    sig = Signals.gather(grid.results, setup.variants)
    seconds: dict[str, float] = {}
    for r in grid.results:
        for k, val in r["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + val
    models = {
        "original": setup.splits,
        "reference": setup.splits * setup.forget_sets,
        "retrained": setup.splits * setup.forget_sets,
    }
    models.update({m: setup.splits * setup.forget_sets for m in setup.methods})
    per_model = {k: seconds[k] / models[k] for k in models if k in seconds}
    return {
        "setup": asdict(setup),
        "attacks": {
            v: attack(sig, v, min_observations=min_observations, bootstrap=bootstrap, seed=setup.seed)
            for v in setup.variants
        },
        "seconds": seconds,
        "seconds_per_model": per_model,
        "jobs": {
            "count": len(grid.keys),
            "computed_now": grid.computed,
            "reused": grid.reused,
            "wall_s": grid.seconds,
            "batched": [bool(r["batched"]) for r in grid.results],
        },
        "seeds": "derive_seed(seed, split, forget_set, role): SHA-256; roles split, original, reference, "
        "under-test (the retrained variant and every method)",
        "bootstrap": {"replicates": bootstrap, **BOOTSTRAP_METHOD},
    }


def expected_observations(setup: UliraSetup, pool: int | None = None) -> float:
    """Models in which an example (a target, with ``targets``) is forgotten, on average; ``pool``: the pool's size,
    needed with ``forget_size`` and no targets."""
    if setup.targets is not None:
        return setup.splits * setup.forget_sets * setup.forget_size / setup.targets
    if setup.forget_size is not None:
        if not pool:
            raise ConfigError("the expected observations of a forget_size need the pool's size")
        return setup.splits * setup.forget_sets * setup.forget_size / pool
    return setup.splits * setup.forget_sets * setup.forget_fraction / 2


__all__ = [
    "UliraSetup",
    "run",
    "report",
    "attack",
    "Signals",
    "shadow_job",
    "derive_seed",
    "plan_split",
    "expected_observations",
    "REFERENCE_VARIANTS",
    "cluster_bootstrap",
    "paired_auc_difference",
    "diagnosis",
    "BOOTSTRAP_METHOD",
]
