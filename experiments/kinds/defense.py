"""The ``defense`` experiment kind: DC-U's MU-regularisation (forget the samples the overfitting metric flags)
against a DP-SGD-trained model of the same architecture (attacks/defend.py), per model and seed. Rows: the
original, the MU-regularised and the DP model; RA = accuracy on the training samples not flagged, FA = on the
flagged ("overfit") ones, MIA = the flagged set's population MIA against the test set."""

from __future__ import annotations

from typing import Any

from ..report import add_reference, lookup, mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace
from .unlearn import method_options

MODELS = ("original", "mu-regularised", "dp-sgd")


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    return [Cell(exp.name, {"model": m}, seed) for m in exp.spec["models"] for seed in range(seeds)]


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    from attacks.defend import mu_regularise, privacy_report, train_dp

    arch, s = cell.key["model"], exp.spec
    data, original = ws.data(), ws.original(cell.key["model"])
    method = s.get("method", "condensed")
    res = mu_regularise(
        original,
        data,
        method=method,
        options=method_options(exp, ws.preset, method, arch),
        condensed=ws.condensed(arch),
        device=ws.device,
        seed=cell.seed,
    )
    overfit = res.split.forget
    dp = s.get("dp", {})
    dp_model, info = train_dp(
        data,
        original,
        epochs=int(dp.get("epochs", 30)),
        lr=float(dp.get("lr", 1e-3)),
        batch_size=int(dp.get("batch_size", 256)),
        target_epsilon=float(dp.get("epsilon", 10.0)),
        delta=float(dp.get("delta", 1e-5)),
        max_grad_norm=float(dp.get("max_grad_norm", 1.0)),
        device=ws.device,
        seed=cell.seed,
    )
    return {
        "overfit_size": len(overfit),
        "original": privacy_report(original, data, overfit, ws.device, cell.seed),
        "mu-regularised": {
            **privacy_report(res.model, data, overfit, ws.device, cell.seed),
            "seconds": res.report["time"]["total_s"],
        },
        "dp-sgd": {**privacy_report(dp_model, data, overfit, ws.device, cell.seed), **info},
    }


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for model in exp.spec["models"]:
        got = [c["result"] for c in cells if c["key"] == {"model": model}]
        if not got:
            continue
        for name in MODELS:
            row: dict[str, Any] = {
                "experiment": exp.name,
                "model": model,
                "forget": "overfit",
                "method": name,
                "seeds": len(got),
            }
            for k, src in (
                ("retain_acc", "retain_acc"),
                ("forget_acc", "overfit_acc"),
                ("test_acc", "test_acc"),
                ("mia", "overfit_mia"),
                ("train_auc", "train_auc"),
            ):
                vals = [r[name][src] for r in got if r[name].get(src) is not None]
                if vals:
                    row[k], row[k + "_std"] = mean_std([100 * v for v in vals])
            extra = f"train-vs-test AUC {row['train_auc'] / 100:.3f}" if "train_auc" in row else ""
            if name == "dp-sgd":
                extra += f"; epsilon spent {mean_std([r[name]['epsilon_spent'] for r in got])[0]:.2f}"
            row["extra"] = extra + f"; overfit set {mean_std([r['overfit_size'] for r in got])[0]:.0f} samples"
            ref = lookup(exp.spec.get("reference", {}), [name])
            if isinstance(ref, list):
                add_reference(row, ref, None, flag=exp.spec.get("flag", True))
            rows.append(row)
    return rows


KINDS.register("defense")(Kind(_cells, _run, _rows))
