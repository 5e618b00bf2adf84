"""``experiments concepts-report``: concept unlearning on a real dataset, next to retraining, as a committed report.

For each seed: train the original (the recipe given; a seed varies the original's initialisation and data order,
the discovery's image sample and k-means, and the poisoned labels; the data split is fixed by data seed 0),
discover its default concept bank (no external model), fit the post-hoc CBM (its test accuracy next to the
original's), rank the forget class's concepts by Integrated Gradients, then forget the class with
``concept-random``, ``concept-targeted`` (donor: the class whose PCBM concept weights are closest to the forget
class's, the concept-based choice) and ``retrain`` (the same recipe from scratch on the retain set, same seed), all
through ``unlearn.request.unlearn_request`` in one run, so time ratios compare like with like. Writes
``report.json`` (every seed's figures, mean +- sample std, command, commit, machine, seeds), ``report.md``, the
seed-0 bank (``bank-seed0.h5``), its concept grid (``figures/concepts.png``) and the forget class's IG attributions
(``figures/ig.png``, needs matplotlib)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import click
import torch

from dcforget.cli import options
from dcforget.datasets import load_data
from dcforget.io import atomic_path, check_writable_dir
from dcforget.provenance import run_meta
from dcforget.runtime import resolve_device
from dcforget.train import TrainConfig, train_on
from unlearn.concepts.bank import preview_grid, write_bank
from unlearn.concepts.cli import pcbm_and_ranking
from unlearn.concepts.discover import discover_bank
from unlearn.request import kept_class_accuracy, unlearn_request

METHODS = ("concept-random", "concept-targeted", "retrain")


def _ms(vals: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "per_seed": vals,
    }


def _fmt(d: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    return f"{scale * d['mean']:.{digits}f} ± {scale * d['std']:.{digits}f}"


def run_report(
    dataset: str,
    *,
    model: str,
    per_class: int,
    epochs: int,
    forget_class: int,
    seeds: list[int],
    out: Path,
    data_dir: str | None,
    device: torch.device,
    quiet: bool,
    head_epochs: int | None = None,
) -> dict[str, Any]:
    data = load_data(dataset, data_dir, per_class, seed=0).to(device)
    names = data.info.class_names
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3)
    rows: list[dict[str, Any]] = []
    for s in seeds:
        t0 = time.perf_counter()
        trained = train_on(data, model, cfg, seed=s, device=device, quiet=quiet)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bank = discover_bank(trained.model, data, device=device, seed=s)
        discover_s = time.perf_counter() - t0
        res = pcbm_and_ranking(trained.model, data, bank, device)
        donor = res["nearest_class"][str(forget_class)]
        row: dict[str, Any] = {
            "seed": s,
            "original_test_acc": trained.test_eval.accuracy,
            "original_train_s": train_s,
            "discover_s": discover_s,
            "concepts": len(bank),
            "dropped": len(bank.dropped),
            "pcbm": res["pcbm"],
            "forget_class_top_concepts": res["ranking"][str(forget_class)][:8],
            "donor": donor,
            "methods": {},
        }
        if s == seeds[0]:
            write_bank(out / "bank-seed0.h5", bank, force=True)
            preview_grid(bank, out / "figures" / "concepts.png", force=True)
            row["bank_rows"] = bank.names
            _ig_figure(res["ranking"][str(forget_class)], names[forget_class], out / "figures" / "ig.png")
        for m in METHODS:
            opts: dict[str, Any] = {}
            if m == "retrain":
                opts = {"epochs": epochs, "batch_size": cfg.batch_size, "lr": cfg.lr}
            elif m == "concept-targeted":
                opts = {"donor": donor}
            if head_epochs is not None and m != "retrain":
                opts["epochs"] = head_epochs
            r = unlearn_request(
                trained.model, data, f"class:{forget_class}", m, device=device, seed=s, options=opts, quiet=quiet
            )
            rep = r.report
            row["methods"][m] = {
                "forget_acc": rep["forget_acc"],
                "test_acc": rep["test_acc"],
                "test_acc_other": kept_class_accuracy(r.model, data, r.split, device),
                "retain_acc": rep["retain_acc"],
                "val_acc": rep["val_acc"],
                "mia": rep["mia"],
                "seconds": rep["time"]["total_s"],
                "options": rep["options"],
                "extra": {k: v for k, v in rep["method_extra"].items() if isinstance(v, (int, float, str))},
            }
            if not quiet:
                click.echo(
                    f"seed {s} {m}: FA {100 * rep['forget_acc']:.1f}  TA {100 * rep['test_acc']:.1f}  "
                    f"{rep['time']['total_s']:.1f} s",
                    err=True,
                )
        rows.append(row)
    summary = {}
    for m in METHODS:
        summary[m] = {
            k: _ms([r["methods"][m][k] for r in rows]) for k in ("forget_acc", "test_acc_other", "test_acc", "seconds")
        }
        summary[m]["time_ratio_to_retrain"] = _ms(
            [r["methods"][m]["seconds"] / r["methods"]["retrain"]["seconds"] for r in rows]
        )
    summary["pcbm_test_acc"] = _ms([r["pcbm"]["test_acc"] for r in rows])
    summary["original_test_acc"] = _ms([r["original_test_acc"] for r in rows])
    return {
        "setting": {
            "dataset": dataset,
            "model": model,
            "per_class": per_class,
            "train_epochs": epochs,
            "train_config": cfg.to_dict(),
            "forget_class": forget_class,
            "forget_class_name": names[forget_class],
            "seeds": seeds,
            "seed_varies": "the original's initialisation and data order, the discovery's image sample and "
            "k-means, the poisoned labels, retraining's initialisation (data split fixed: data seed 0)",
            "train_size": len(data.train),
            "val_size": len(data.val) if data.val is not None else 0,
            "test_size": len(data.test),
        },
        "rows": rows,
        "summary": summary,
    }


def _ig_figure(ranking: list[dict[str, Any]], class_name: str, path: Path, top: int = 12) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plots extra is optional; the JSON holds the same numbers
        return
    items = ranking[:top]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([x["concept"] for x in items][::-1], [x["attribution"] for x in items][::-1], color="tab:blue")
    ax.set_xlabel("mean IG attribution to the PCBM logit")
    ax.set_title(f"concepts of class '{class_name}' (seed 0)")
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def markdown(rep: dict[str, Any]) -> str:
    st, sm, meta = rep["setting"], rep["summary"], rep["meta"]
    lines = [
        f"# Concept unlearning: {st['dataset']}, {st['model']}, forget class {st['forget_class']} "
        f"({st['forget_class_name']})",
        "",
        f"Command: `{meta['command']}`  ",
        f"Code: {meta['git']}  ",
        f"Machine: {meta['machine']}  ",
        f"Finished: {meta['finished_utc']} UTC; seeds {st['seeds']} ({st['seed_varies']}).",
        "",
        f"Setting: {st['per_class']} images per class ({st['train_size']} train, {st['val_size']} validation, "
        f"{st['test_size']} test), the original trained {st['train_epochs']} epochs (Adam 1e-3, batch 128); "
        "retraining = the same recipe from scratch on the retain set. Default concept bank (discovered, no "
        "external model); mean ± sample std over the seeds.",
        "",
        f"Original test accuracy {_fmt(sm['original_test_acc'])}%; post-hoc CBM over the discovered concepts "
        f"{_fmt(sm['pcbm_test_acc'])}%.",
        "",
        "| method | FA (%) | TA other classes (%) | TA (%) | time (s) | time / retrain |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        s = sm[m]
        lines.append(
            f"| {m} | {_fmt(s['forget_acc'])} | {_fmt(s['test_acc_other'])} | {_fmt(s['test_acc'])} | "
            f"{_fmt(s['seconds'], 1.0, 2)} | {_fmt(s['time_ratio_to_retrain'], 1.0, 3)} |"
        )
    r0 = rep["rows"][0]
    top = ", ".join(f"{x['concept']} ({x['attribution']:+.2f})" for x in r0["forget_class_top_concepts"][:5])
    lines += [
        "",
        f"Seed {st['seeds'][0]}: {r0['concepts']} concepts kept ({r0['dropped']} dropped); the forget class's top "
        f"concepts by IG: {top}; concept-based donor class {r0['donor']}.",
        "",
        "Concept grid (seed 0; one row per concept, in the bank's order: " + ", ".join(r0.get("bank_rows", [])) + "):",
        "",
        "![concepts](figures/concepts.png)",
        "",
        "Integrated Gradients of the forget class's PCBM logit (seed 0):",
        "",
        "![IG attributions](figures/ig.png)",
        "",
        "Time of a request = everything after the forget set is known (embedding caching and head fine-tuning for "
        "the poisoning methods; the whole training for retraining); offline work (training the original, "
        "discovery, the PCBM) is listed per seed in report.json.",
        "",
    ]
    return "\n".join(lines)


@click.command("concepts-report")
@click.argument("dataset")
@click.option("--model", default="cnn", show_default=True, help="Architecture of the original and of retraining.")
@click.option("--per-class", type=click.IntRange(min=2), default=300, show_default=True, help="Training-set cap.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True, help="Training epochs.")
@click.option("--forget-class", type=click.IntRange(min=0), default=4, show_default=True, help="The class to forget.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds (at least 3 for a report).")
@click.option("--head-epochs", type=click.IntRange(min=1), default=None, help="Override the methods' epochs.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch threads for the whole run (every method and retraining alike; default: torch's). On a shared "
    "2-core VM, 2 threads on a busy machine make small steps (the head's, batch 32) many times slower (spin-waiting).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder (e.g. reports/...).")
@options("data_dir", "device", "force", "quiet")
def concepts_report_cmd(
    dataset, model, per_class, epochs, forget_class, seeds, head_epochs, threads, out, data_dir, device, force, quiet
):
    """Concept unlearning on DATASET with the default concept bank, next to retraining (report.json + report.md +
    concept grid + IG attributions)."""
    from dcforget.errors import ConfigError

    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise ConfigError("--seeds names no seed")
    out_p = Path(out)
    if (out_p / "report.json").exists() and not force:
        raise ConfigError(f"{out_p / 'report.json'} already exists; pass --force to overwrite it")
    check_writable_dir(out_p.parent if not out_p.exists() else out_p)
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    data_probe = load_data(dataset, data_dir, per_class, seed=0)
    if forget_class >= data_probe.info.num_classes:
        raise ConfigError(
            f"--forget-class {forget_class} is out of range: {dataset} has classes 0..{data_probe.info.num_classes - 1}"
        )
    del data_probe
    out_p.mkdir(parents=True, exist_ok=True)
    rep = run_report(
        dataset,
        model=model,
        per_class=per_class,
        epochs=epochs,
        forget_class=forget_class,
        seeds=seed_list,
        out=out_p,
        data_dir=data_dir,
        device=dev,
        quiet=quiet,
        head_epochs=head_epochs,
    )
    rep["meta"] = run_meta(dev, seeds=seed_list, torch_threads=torch.get_num_threads())
    with atomic_path(out_p / "report.json", force=True) as tmp:
        tmp.write_text(json.dumps(rep, indent=2))
    with atomic_path(out_p / "report.md", force=True) as tmp:
        tmp.write_text(markdown(rep))
    click.echo(markdown(rep))
    click.echo(f"wrote {out_p / 'report.json'} and {out_p / 'report.md'}")
