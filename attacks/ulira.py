"""U-LiRA (Hayes et al., arXiv 2403.01218; docs/reference/unlearning-methods.md §2.6): a per-example likelihood-ratio attack on
unlearning.

Shadow s draws a random half of the training set, and a random ``forget_fraction`` of that half as its forget
set. It trains an original model on the half, retrains from scratch on the half minus the forget set, and
unlearns the forget set from the original with each method under test (one shadow serves several methods: the
expensive original and retrained models are shared). Every model's logit-scaled confidence
(log p_y - log(1 - p_y)) on every training example is written to an HDF5 file, one group per shadow, so many
shadows stream from disk and finished shadows are skipped on a rerun (``run_shadows`` is resumable and each
shadow is independent, so the loop can later be spread over workers).

Seeds. Shadow i's split, original model and *reference* retrained model use ``shadow_seed(seed, i)`` =
seed * 1000003 + i. The models under attack -- the ``retrained`` variant (a second model retrained from scratch on
the same retain set) and every unlearning method -- use ``under_test_seed(seed, i)`` = shadow_seed + 2**31, which
differs from every shadow's seed (and, modulo 2**32, from every shadow's numpy seed) for fewer than 2**31 shadows.
So the ``retrained`` null test compares two independently trained models and can fail; with one shared seed it
compared a model with itself and scored AUC 0.5 by construction. Both seeds are recorded per shadow.

The signals file carries ``schema`` = :data:`SCHEMA`. An existing file without it (not HDF5, a condensed set, any
other HDF5, an older signals layout) is refused untouched; a finished shadow is added by copying the file to a
temporary sibling, writing there, fsyncing and renaming it over the original (``dcforget.io.atomic_path``), so a
crash leaves the previous file intact. (Two processes adding shadows to one file at once would lose one's shadow.)

Attack on a variant V (an unlearning method, or ``original`` / ``retrained`` as the two reference points),
leaving each target shadow t out: for an example i forgotten in t, a Gaussian fitted to V's confidences on i in
the other shadows where i was forgotten (``forgotten``) and one fitted to the retrained models' confidences on i
where i was outside the training half (``never``) give the log-likelihood ratio of an observed confidence.
Positives are t's V model on its forget examples; negatives are t's reference retrained model on the same examples
(which never saw them). AUC 0.5 means V is indistinguishable from retraining; ``original`` shows what the attack finds
when nothing was unlearned.
Means are per example; the standard deviation is pooled over examples (LiRA's fixed-variance variant), since an
example is forgotten in only a few shadows.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from dcforget.datasets import Data
from dcforget.errors import ConfigError, DcForgetError
from dcforget.io import atomic_path
from dcforget.progress import bar
from dcforget.runtime import generator
from dcforget.train import TrainConfig, train_on

from .epsilon import confidences
from .roc import auc, tpr_at_fpr

REFERENCE_VARIANTS = ("original", "retrained")
SCHEMA = "dcforget.ulira-signals/2"
TEST_SEED_OFFSET = 2 ** 31


class SignalsFileError(DcForgetError, ValueError):
    """A --signals path that is not (or no longer) a U-LiRA signals file of this version."""


def shadow_seed(seed: int, index: int) -> int:
    """Shadow ``index``'s split, original and reference retrained model."""
    return seed * 1_000_003 + index


def under_test_seed(seed: int, index: int) -> int:
    """The models under attack in shadow ``index`` (the ``retrained`` variant and the unlearning methods): differs
    from ``shadow_seed(seed, j)`` for every j < 2**31."""
    return shadow_seed(seed, index) + TEST_SEED_OFFSET


def check_signals(path: str | os.PathLike) -> bool:
    """True when ``path`` is a signals file of this version, False when nothing is there; otherwise a
    :class:`SignalsFileError` (the file is left alone)."""
    p = Path(path)
    if not p.exists():
        return False
    if not p.is_file():
        raise SignalsFileError(f"{p} is not a file")
    try:
        is_h5 = h5py.is_hdf5(p)
    except OSError as err:
        raise SignalsFileError(f"cannot read {p}: {err.strerror or err}") from None
    if not is_h5:
        raise SignalsFileError(f"{p} is not an HDF5 file, so not a U-LiRA signals file; refusing to touch it")
    try:
        with h5py.File(p, "r") as f:
            schema = f.attrs.get("schema")
    except OSError as err:
        raise SignalsFileError(f"cannot read {p} as HDF5: {err}") from None
    if isinstance(schema, bytes):
        schema = schema.decode(errors="replace")
    if schema != SCHEMA:
        what = "no schema attribute" if schema is None else f"schema {schema!r}"
        raise SignalsFileError(f"{p} is not a U-LiRA signals file of this version ({what}, want {SCHEMA!r}); "
                               f"refusing to modify it: give a new --signals path")
    return True


@dataclass
class ShadowPlan:
    index: int
    in_train: torch.Tensor  # bool [N]
    in_forget: torch.Tensor  # bool [N]


def plan_shadow(n: int, index: int, forget_fraction: float, seed: int) -> ShadowPlan:
    g = generator(seed * 1_000_003 + index)
    perm = torch.randperm(n, generator=g)
    half = perm[: n // 2]
    forget = half[torch.randperm(len(half), generator=g)[: max(1, int(round(forget_fraction * len(half))))]]
    in_train = torch.zeros(n, dtype=torch.bool)
    in_train[half] = True
    in_forget = torch.zeros(n, dtype=torch.bool)
    in_forget[forget] = True
    return ShadowPlan(index, in_train, in_forget)


def _done(f: h5py.File, index: int) -> bool:
    g = f.get(f"shadows/{index}")
    return g is not None and bool(g.attrs.get("complete", False))


def run_shadows(data: Data, arch: str, train_cfg: TrainConfig, methods: dict[str, dict[str, Any]], *,
                shadows: int, signals: str | os.PathLike, device: torch.device, seed: int = 0,
                forget_fraction: float = 0.1, condensed_fn=None, quiet: bool = False) -> dict[str, float]:
    """Train the shadows that ``signals`` does not hold yet, unlearning with every method of ``methods`` (name ->
    options); returns how many were trained here and the seconds per shadow."""
    from unlearn.methods import METHODS
    from unlearn.request import unlearn_request  # attacks may use the unlearning stage (imports flow forward)

    if not methods:
        raise ConfigError("U-LiRA needs at least one unlearning method")
    if not 0 <= shadows < TEST_SEED_OFFSET:
        raise ConfigError(f"shadows must be in [0, 2**31), got {shadows}")
    variants = [*REFERENCE_VARIANTS, *methods]
    path = Path(signals)
    n = len(data.train)
    meta = {"train_fingerprint": data.fingerprint(), "arch": arch, "variants": json.dumps(variants),
            "method_options": json.dumps(methods, sort_keys=True, default=str), "seed": seed,
            "forget_fraction": forget_fraction, "train_config": json.dumps(train_cfg.to_dict(), sort_keys=True)}
    todo = list(range(shadows))
    if check_signals(path):
        with h5py.File(path, "r") as f:
            for k, v in meta.items():
                if k not in f.attrs or f.attrs[k] != v:
                    have = f.attrs[k] if k in f.attrs else None
                    raise ConfigError(f"{path} holds shadows of another setup ({k}={have!r}, not {v!r})")
            todo = [i for i in range(shadows) if not _done(f, i)]
    times = []
    for i in bar(todo, desc="shadows", quiet=quiet, unit="shadow"):
        t0 = time.perf_counter()
        plan = plan_shadow(n, i, forget_fraction, seed)
        s_seed, t_seed = shadow_seed(seed, i), under_test_seed(seed, i)
        idx = torch.nonzero(plan.in_train).flatten()
        original = train_on(data, arch, train_cfg, seed=s_seed, device=device, index=idx, quiet=True).model
        retain = torch.nonzero(plan.in_train & ~plan.in_forget).flatten()
        reference = train_on(data, arch, train_cfg, seed=s_seed, device=device, index=retain, quiet=True).model
        retrained = train_on(data, arch, train_cfg, seed=t_seed, device=device, index=retain, quiet=True).model
        # the shadow's world is its half: the request forgets positions within it, the method sees only the half
        half = replace(data, train=data.train.subset(idx), source_indices=data.source_indices[idx.to(data.source_indices.device)],
                       _fingerprint=None)
        forget_pos = torch.nonzero(plan.in_forget[idx]).flatten()
        condensed = None
        if condensed_fn is not None and any(METHODS.get(m).needs_condensed for m in methods):
            condensed = condensed_fn(original, half)
        models = [original, retrained]
        with tempfile.TemporaryDirectory() as tmp:
            spec_file = Path(tmp) / "forget.txt"
            spec_file.write_text("\n".join(map(str, forget_pos.tolist())))
            for method, options in methods.items():
                res = unlearn_request(original, half, f"indices:{spec_file}", method, device=device, seed=t_seed,
                                      options=options, quiet=True,
                                      condensed=condensed if METHODS.get(method).needs_condensed else None)
                models.append(res.model)
        confs = torch.stack([confidences(m, data.train.images, data.train.labels, device) for m in models])
        ref = confidences(reference, data.train.images, data.train.labels, device)
        _write_shadow(path, meta, i, plan, confs, ref, s_seed, t_seed)
        times.append(time.perf_counter() - t0)
    return {"trained": len(times), "seconds_per_shadow": float(np.mean(times)) if times else 0.0,
            "seeds": {"shadow": "seed * 1000003 + i (split, original, reference retrained model)",
                      "under_test": "seed * 1000003 + i + 2**31 (the 'retrained' variant and the unlearning methods)"}}


def _write_shadow(path: Path, meta: dict[str, Any], i: int, plan: ShadowPlan, confs: torch.Tensor,
                  ref: torch.Tensor, s_seed: int, t_seed: int) -> None:
    """Add shadow ``i`` to the signals file atomically: copy, write the copy, fsync, rename over."""
    n = confs.shape[1]
    with atomic_path(path, force=True) as tmp:
        existed = check_signals(path)  # re-checked: still ours
        if existed:
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+" if existed else "w") as f:
            if not existed:
                f.attrs["schema"] = SCHEMA
                for k, v in meta.items():
                    f.attrs[k] = v
            if f"shadows/{i}" in f:  # an unfinished shadow of this signals file: redone
                del f[f"shadows/{i}"]
            g = f.create_group(f"shadows/{i}")
            g.create_dataset("conf", data=confs.numpy().astype(np.float32), chunks=(1, n))
            g.create_dataset("reference", data=ref.numpy().astype(np.float32))
            g.create_dataset("in_train", data=plan.in_train.numpy())
            g.create_dataset("in_forget", data=plan.in_forget.numpy())
            g.attrs["seed"] = s_seed
            g.attrs["test_seed"] = t_seed
            g.attrs["complete"] = True


def variants(signals: str | os.PathLike) -> list[str]:
    """The models every shadow of ``signals`` holds: original, retrained, then each unlearning method."""
    if not check_signals(signals):
        raise SignalsFileError(f"no signals file at {signals}")
    with h5py.File(signals, "r") as f:
        return json.loads(f.attrs["variants"])


def _read(signals: str | os.PathLike):
    with h5py.File(signals, "r") as f:
        ids = sorted(int(k) for k in f["shadows"] if f[f"shadows/{k}"].attrs.get("complete", False))
        if not ids:
            raise ConfigError(f"{signals} holds no finished shadow")
        conf = torch.from_numpy(np.stack([f[f"shadows/{i}/conf"][()] for i in ids]))  # [S, variants, N]
        ref = torch.from_numpy(np.stack([f[f"shadows/{i}/reference"][()] for i in ids]))  # [S, N]
        in_train = torch.from_numpy(np.stack([f[f"shadows/{i}/in_train"][()] for i in ids]))
        in_forget = torch.from_numpy(np.stack([f[f"shadows/{i}/in_forget"][()] for i in ids]))
        seeds = {"reference": [int(f[f"shadows/{i}"].attrs["seed"]) for i in ids],
                 "under_test": [int(f[f"shadows/{i}"].attrs["test_seed"]) for i in ids]}
    return conf.double(), ref.double(), in_train, in_forget, seeds


def attack(signals: str | os.PathLike, variant: str | None = None) -> dict[str, Any]:
    """Leave-one-shadow-out U-LiRA on ``variant`` (default: the first unlearning method) over every shadow's forget
    examples."""
    names = variants(signals)
    variant = variant or names[len(REFERENCE_VARIANTS)]
    if variant not in names:
        raise ConfigError(f"{signals} holds no {variant!r} models; it holds {', '.join(names)}")
    conf, ret, in_train, in_forget, seeds = _read(signals)
    s_count = conf.shape[0]
    if s_count < 3:
        raise ConfigError("U-LiRA needs at least 3 finished shadows")
    unl = conf[:, names.index(variant)]  # ret: the reference retrained models (their own seeds)
    pos_scores, neg_scores, examples = [], [], []
    for t in range(s_count):
        others = torch.arange(s_count) != t
        f_mask = in_forget[others]  # [S-1, N] forgotten in that shadow
        n_mask = ~in_train[others]  # never seen
        f_cnt, n_cnt = f_mask.sum(0), n_mask.sum(0)
        mu_f = (unl[others] * f_mask).sum(0) / f_cnt.clamp_min(1)
        mu_n = (ret[others] * n_mask).sum(0) / n_cnt.clamp_min(1)
        ok = in_forget[t] & (f_cnt > 0) & (n_cnt > 0)
        resid_f = ((unl[others] - mu_f) * f_mask)[:, ok]
        resid_n = ((ret[others] - mu_n) * n_mask)[:, ok]
        sd_f = float((resid_f ** 2).sum() / max(int(f_mask[:, ok].sum()) - 1, 1)) ** 0.5 + 1e-6
        sd_n = float((resid_n ** 2).sum() / max(int(n_mask[:, ok].sum()) - 1, 1)) ** 0.5 + 1e-6

        def llr(x):
            return (-0.5 * ((x - mu_f[ok]) / sd_f) ** 2 - np.log(sd_f)) - (-0.5 * ((x - mu_n[ok]) / sd_n) ** 2 - np.log(sd_n))

        pos_scores.append(llr(unl[t, ok]))
        neg_scores.append(llr(ret[t, ok]))
        examples.append(torch.nonzero(ok).flatten())
    pos, neg = torch.cat(pos_scores), torch.cat(neg_scores)
    if len(pos) == 0:
        raise ConfigError(f"no forget example of any shadow was forgotten in another shadow and unseen in a third: "
                          f"use more shadows (have {s_count}) or a larger forget fraction")
    return {"variant": variant, "shadows": s_count, "examples": int(len(pos)), "auc": auc(pos, neg), "seeds": seeds,
            "tpr_at_1pct_fpr": tpr_at_fpr(pos, neg, 0.01), "tpr_at_0.1pct_fpr": tpr_at_fpr(pos, neg, 0.001),
            "per_example": {"shadow": [t for t, e in enumerate(examples) for _ in range(len(e))],
                            "index": torch.cat(examples).tolist(), "score_unlearned": pos.tolist(),
                            "score_retrained": neg.tolist()}}
