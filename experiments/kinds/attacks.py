"""The ``attacks`` experiment kind: every attack of the attacks stage on the original, retrained and unlearned
models of one forget request, on the preset's data .

Parts (one cell per part and seed; ``parts`` in the experiment file):

- ``mia``: population MIA (forget vs test), AUC and TPR at 1% FPR of the logit-scaled confidence, SSD's
  entropy attack and SalUn's SVC-MIA (fitted on ``svc_max`` images per side).
- ``inversion``: class-representative inversion (``inv_steps`` steps) and DC-U's condensive inversion
  (``cond_subclasses`` sub-classes x ``cond_epochs`` generator epochs on ``cond_pool`` test images per class),
  scored against the forget set by an evaluator CNN trained on the test split (it never saw a training image).
- ``ulira``: U-LiRA (``attacks.ulira``) with ``shadow_model`` (default ``model``) over ``shadows`` random halves of
  ``shadow_per_class`` images per class, ``forget_sets`` forget sets of ``forget_fraction`` each; its jobs are kept
  in the workspace's job store, so a rerun reads them back. (The full-size U-LiRA run is ``attacks ulira --preset``.)

The request is ``forget`` (one spec) on ``model``; ``methods`` are the unlearning methods attacked besides the
original and retraining, with options from ``[method_options]``."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from attacks.epsilon import logit_confidence
from attacks.inversion import condensive_invert, invert_classes, score_reconstructions
from attacks.mia_variants import entropy_lr_mia, svc_mia
from attacks.roc import auc, tpr_at_fpr
from attacks.ulira import UliraSetup
from attacks.ulira import report as ulira_report
from attacks.ulira import run as run_ulira
from dcforget.errors import ConfigError
from dcforget.metrics import population_mia
from dcforget.train import TrainConfig, embed
from unlearn.methods import METHODS
from unlearn.request import unlearn_request

from ..artefacts import original_model
from ..report import mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace
from .unlearn import method_options

PARTS = ("mia", "inversion", "ulira")


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    parts = exp.spec.get("parts", list(PARTS))
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ConfigError(f"experiment {exp.name}: unknown attack part(s) {', '.join(bad)}; known: {', '.join(PARTS)}")
    for m in exp.spec.get("methods", []):
        METHODS.get(m)
    n = min(seeds, int(exp.spec.get("seeds", seeds)))
    return [Cell(exp.name, {"part": p}, seed) for p in parts for seed in range(n)]


def _models(exp: Experiment, ws: Workspace, seed: int):
    """The original and, for the experiment's request, retraining and every method: (models, forget indices);
    made once per run and seed, so the mia and inversion parts attack the same models."""
    return ws._cached(f"attacked-models/{exp.name}/{seed}", lambda: _make_models(exp, ws, seed))


def _make_models(exp: Experiment, ws: Workspace, seed: int):
    s, arch = exp.spec, exp.spec.get("model", "cnn")
    data, original = ws.data(), ws.original(arch)
    models, forget = {"original": original.eval()}, None
    for m in ["retrain", *s.get("methods", [])]:
        needs = METHODS.get(m).needs_condensed
        r = unlearn_request(
            original,
            data,
            s.get("forget", "random:0.1"),
            m,
            device=ws.device,
            seed=seed,
            options=method_options(exp, ws.preset, m, arch),
            quiet=True,
            condensed=ws.condensed(arch) if needs else None,
        )
        models[m], forget = r.model.eval(), r.split.forget
    return models, forget


def _mia(exp: Experiment, ws: Workspace, seed: int) -> dict[str, Any]:
    data = ws.data()
    models, forget = _models(exp, ws, seed)
    keep = torch.ones(len(data.train), dtype=torch.bool, device=data.train.labels.device)
    keep[forget.to(keep.device)] = False
    fx, fy = data.train.images[forget.to(keep.device)], data.train.labels[forget.to(keep.device)]
    out = {}
    for m, model in models.items():
        lg = lambda x: embed(model, x, device=ws.device, logits=True).cpu()
        ret = (lg(data.train.images[keep]), data.train.labels[keep].cpu())
        tst, fgt = (lg(data.test.images), data.test.labels.cpu()), (lg(fx), fy.cpu())
        f_loss = F.cross_entropy(fgt[0], fgt[1], reduction="none")
        t_loss = F.cross_entropy(tst[0], tst[1], reduction="none")
        svc = svc_mia(ret, tst, fgt, max_per_side=exp.spec.get("svc_max"), seed=seed)
        cf, ct = logit_confidence(*fgt), logit_confidence(*tst)
        out[m] = {
            "mia": population_mia(f_loss, t_loss, seed=seed).accuracy,
            "auc": auc(cf, ct),
            "tpr_at_1pct_fpr": tpr_at_fpr(cf, ct, 0.01),
            "entropy_lr_member_rate": entropy_lr_mia(ret, tst, fgt, seed=seed),
            "svc_confidence": svc["efficacy"]["confidence"],
            "forget_acc": float((fgt[0].argmax(1) == fgt[1]).float().mean()),
            "test_acc": float((tst[0].argmax(1) == tst[1]).float().mean()),
        }
    return out


def _inversion(exp: Experiment, ws: Workspace, seed: int) -> dict[str, Any]:
    s, data = exp.spec, ws.data()
    models, forget = _models(exp, ws, seed)
    fx, fy = (
        data.train.images[forget.to(data.train.labels.device)],
        data.train.labels[forget.to(data.train.labels.device)],
    )
    epochs = int(s.get("evaluator_epochs", 20))
    evaluator_data = replace(data, train=data.test, source_indices=torch.arange(len(data.test)), _fingerprint=None)
    arch = s.get("model", "cnn")
    evaluator = original_model(
        ws.root / ws.variant("evaluator") / f"evaluator-{arch}-{epochs}.pt",
        evaluator_data,
        arch,
        TrainConfig(epochs=epochs, bf16=ws.preset.get("bf16", False)),
        device=ws.device,
        seed=12345,
    ).eval()
    out = {}
    for m, model in models.items():
        t0 = time.perf_counter()
        rec, tg = invert_classes(
            model,
            data.info.num_classes,
            data.info.image_shape,
            per_class=2,
            steps=int(s.get("inv_steps", 100)),
            seed=seed,
        )
        t1 = time.perf_counter()
        crec, ctg = condensive_invert(
            model,
            data,
            pool="test",
            subclasses=int(s.get("cond_subclasses", 5)),
            epochs=int(s.get("cond_epochs", 5)),
            pool_per_class=s.get("cond_pool"),
            seed=seed,
        )
        t2 = time.perf_counter()
        out[m] = {
            "class": {**score_reconstructions(rec, tg, fx, fy, evaluator), "seconds": t1 - t0},
            "condensive": {**score_reconstructions(crec, ctg, fx, fy, evaluator), "seconds": t2 - t1},
        }
    return out


def _ulira(exp: Experiment, ws: Workspace, seed: int) -> dict[str, Any]:
    s, p = exp.spec, ws.preset
    arch = s.get("shadow_model", s.get("model", "cnn"))
    methods = {m: method_options(exp, ws.preset, m, arch) for m in s.get("methods", [])}
    setup = UliraSetup(
        p["dataset"],
        arch,
        {"epochs": int(s.get("shadow_epochs", 15)), "bf16": p.get("bf16", False)},
        methods,
        int(s.get("shadow_per_class", 300)),
        0,
        int(s.get("shadows", 8)),
        int(s.get("forget_sets", 1)),
        float(s.get("forget_fraction", 0.1)),
        seed,
        int(s.get("shadow_clusters", 30)),
        int(s.get("splits_per_job", 8)),
    )
    grid = run_ulira(setup, ws.root / "jobs", data_dir=ws.data_dir, device=str(ws.device))  # jobs are artefacts
    rep = ulira_report(setup, grid, bootstrap=int(s.get("bootstrap", 200)))
    out: dict[str, Any] = {"seconds_per_split": sum(rep["seconds"].values()) / setup.splits}
    for v, r in rep["attacks"].items():
        out[v] = {
            k: r[k]
            for k in ("auc", "auc_ci", "accuracy", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "pairs", "splits")
            if k in r
        }
    return out


RUN = {"mia": _mia, "inversion": _inversion, "ulira": _ulira}


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    return RUN[cell.key["part"]](exp, ws, cell.seed)


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for part in exp.spec.get("parts", list(PARTS)):
        got = [c["result"] for c in cells if c["key"]["part"] == part]
        if not got:
            continue
        names = [k for k in got[0] if isinstance(got[0][k], dict)]
        for name in names:
            subs = (
                {"": [g[name] for g in got]}
                if part != "inversion"
                else {f" ({kind})": [g[name][kind] for g in got] for kind in ("class", "condensive")}
            )
            for suffix, results in subs.items():
                row: dict[str, Any] = {
                    "model": exp.spec.get("model", "cnn"),
                    "part": part,
                    "method": name + suffix,
                    "seeds": len(results),
                }
                for key in results[0]:
                    if isinstance(results[0][key], (int, float)) and key not in ("pairs", "splits"):
                        row[key], row[key + "_std"] = mean_std([float(r[key]) for r in results])
                if part == "ulira":
                    ci = results[0].get("auc_ci")
                    row["extra"] = (
                        f"{results[0]['pairs']} forget examples, {results[0]['splits']} splits"
                        + (f", AUC 95% CI [{ci[0]:.3f}, {ci[1]:.3f}] (seed 0)" if ci else "")
                        + f", {got[0]['seconds_per_split']:.0f} s per split"
                    )
                rows.append(row)
    return rows


COLUMNS = (
    ("mia", "pop MIA", ".3f"),
    ("auc", "AUC", ".3f"),
    ("tpr_at_1pct_fpr", "TPR@1%FPR", ".3f"),
    ("tpr_at_0.1pct_fpr", "TPR@0.1%FPR", ".3f"),
    ("entropy_lr_member_rate", "entropy-LR members", ".3f"),
    ("svc_confidence", "SVC-MIA conf.", ".3f"),
    ("ssim", "SSIM", ".3f"),
    ("feature_cosine", "feature cos", ".3f"),
    ("evaluator_accuracy", "evaluator acc", ".2f"),
    ("forget_acc", "FA", ".3f"),
    ("test_acc", "TA", ".3f"),
    ("seconds", "s", ".0f"),
)

KINDS.register("attacks")(Kind(_cells, _run, _rows, COLUMNS))
