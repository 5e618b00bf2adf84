"""``attacks``: membership inference, U-LiRA, the epsilon metric, DC-U's metrics and model inversion."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from dcforget.checkpoint import CheckpointMeta, load_checkpoint, open_checkpoint, read_checkpoint_meta
from dcforget.cli import Group, opt, options, out_dir, out_file, with_logging
from dcforget.config import parse_options
from dcforget.datasets import load_data
from dcforget.errors import ConfigError, TrainingSetMismatchError
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget
from dcforget.io import atomic_path, atomic_paths, check_writable
from dcforget.metrics import population_mia
from dcforget.pairing import check_pairing
from dcforget.runtime import resolve_device
from dcforget.train import as_unit, embed, evaluate

from .roc import auc, tpr_at_fpr


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Privacy attacks on (unlearned) models.

    \b
    attacks mia --checkpoint runs/unlearn/r10/model.pt --out mia.json
    attacks epsilon --unlearned u0.pt --unlearned u1.pt --retrained r0.pt --retrained r1.pt --out eps.json
    """


def _forget_indices(meta: CheckpointMeta, spec: str | None, data, seed: int, model) -> torch.Tensor:
    if spec:
        ctx = ForgetContext(
            data.train.labels,
            data.info.num_classes,
            seed,
            data.info.class_names,
            extra={"model": model, "images": data.train.images},
        )
        return resolve_forget(ForgetSpec.parse(spec), ctx).forget
    if meta.forgotten:
        return torch.tensor(meta.forgotten, dtype=torch.long)
    raise ConfigError("give --forget SPEC (this checkpoint records no forgotten samples)")


def _write(out: str | None, force: bool, report: dict) -> None:
    if out:
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(json.dumps(report, indent=2))


def one_model_options(f):
    """--checkpoint, --forget, --data-dir, --seed, --device, --out, --force: attacks on one model."""
    for deco in reversed(
        [
            click.option("--checkpoint", type=click.Path(dir_okay=False), required=True),
            click.option(
                "--forget",
                "forget_spec",
                default=None,
                help="Forget set / members (default: what the checkpoint forgot).",
            ),
            opt("data_dir"),
            opt("seed", default=0, show_default=True),
            opt("device"),
            opt("quiet"),
            out_file("the JSON report."),
            opt("force"),
            with_logging,
        ]
    ):
        f = deco(f)
    return f


def dir_output_options(out_help: str):
    """--data-dir, --seed, --device, --quiet, --out DIR (required), --force, and logging: attacks that write a
    directory."""

    def deco(f):
        for d in reversed(
            [
                opt("data_dir"),
                opt("seed", default=0, show_default=True),
                opt("device"),
                opt("quiet"),
                out_dir(out_help, required=True),
                opt("force"),
                with_logging,
            ]
        ):
            f = d(f)
        return f

    return deco


def _same_training_set(paths: list) -> list[CheckpointMeta]:
    """The checkpoints' metadata, all made from one training set (dcforget.pairing's mismatch error otherwise)."""
    metas = [read_checkpoint_meta(p)[0] for p in paths]
    for p, m in zip(paths[1:], metas[1:]):
        check_pairing(m, where=f"checkpoint {p}", dataset=metas[0].dataset, fingerprint=metas[0].train_fingerprint)
        if m.train_fingerprint != metas[0].train_fingerprint:  # one of them records none: no proof they match
            raise TrainingSetMismatchError(
                f"checkpoint {p} and {paths[0]} cannot be shown to share a training set "
                "(one records no training-set fingerprint)"
            )
    return metas


def _open_one(checkpoint, data_dir, device, out, force):
    """Check the output, load the checkpoint's dataset (same cap and seed) and the model on the device."""
    if out:
        check_writable(out, force)
    ck, data = open_checkpoint(checkpoint, data_dir)
    dev = resolve_device(device)
    return ck.meta, data, ck.model.to(dev), dev


@main.command("mia")
@one_model_options
@click.option(
    "--svc/--no-svc", default=False, help="Also SalUn's SVC-MIA variants (RBF SVC per feature; needs scikit-learn)."
)
@click.option(
    "--svc-max",
    type=click.IntRange(min=2),
    default=None,
    help="Cap on the retain/test samples each SVC is fitted on (RBF SVCs cost O(n^2); default: |test|).",
)
def mia_cmd(checkpoint, forget_spec, data_dir, seed, device, quiet, out, force, svc, svc_max) -> None:
    """Population MIA: forget set (members) vs test set (non-members) on per-sample loss, with ROC AUC and
    TPR at low FPR; SSD's entropy attack; and with --svc, SalUn's SVC-MIA efficacies."""

    from .mia_variants import entropy_lr_mia, svc_mia

    meta, data, model, dev = _open_one(checkpoint, data_dir, device, out, force)
    data = data.to(dev)
    forget = _forget_indices(meta, forget_spec, data, seed, model).to(data.train.labels.device)
    f = evaluate(model, data.train.images[forget], data.train.labels[forget], device=dev)
    t = evaluate(model, data.test.images, data.test.labels, device=dev)
    res = population_mia(f.losses, t.losses, seed=seed)
    from .epsilon import logit_confidence

    rep = {
        "checkpoint": str(checkpoint),
        "members": len(forget),
        "non_members": len(t),
        "mia": res.accuracy,
        "mia_splits": res.split_accuracies,
        "indiscernibility": res.indiscernibility,
        "forget_acc": f.accuracy,
        "test_acc": t.accuracy,
        "seed": seed,
    }
    keep = torch.ones(len(data.train), dtype=torch.bool, device=forget.device)
    keep[forget] = False
    logits = lambda images: embed(model, images, device=dev, logits=True).cpu()
    sets = {
        "retain": (data.train.images[keep], data.train.labels[keep]),
        "test": (data.test.images, data.test.labels),
        "forget": (data.train.images[forget], data.train.labels[forget]),
    }
    outs = {k: (logits(x), y.cpu()) for k, (x, y) in sets.items()}
    cf, ct = logit_confidence(*outs["forget"]), logit_confidence(*outs["test"])  # ROC score: no saturation
    rep.update(
        auc=auc(cf, ct), tpr_at_1pct_fpr=tpr_at_fpr(cf, ct, 0.01), **{"tpr_at_0.1pct_fpr": tpr_at_fpr(cf, ct, 0.001)}
    )
    rep["entropy_lr_forget_member_rate"] = entropy_lr_mia(outs["retain"], outs["test"], outs["forget"], seed=seed)
    line = (
        f"MIA {100 * res.accuracy:.2f}% (indiscernibility {res.indiscernibility:.3f}), AUC "
        f"{rep['auc']:.3f}, TPR@1%FPR {rep['tpr_at_1pct_fpr']:.3f}; {len(forget)} members vs {len(t)} "
        f"non-members; entropy-LR member rate {rep['entropy_lr_forget_member_rate']:.3f}"
    )
    if svc:
        rep["svc_mia"] = svc_mia(outs["retain"], outs["test"], outs["forget"], max_per_side=svc_max, seed=seed)
        line += f"; SVC-MIA efficacy (confidence) {rep['svc_mia']['efficacy']['confidence']:.3f}"
    click.echo(line)
    _write(out, force, rep)


@main.command("epsilon")
@click.option(
    "--unlearned",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Unlearned checkpoints (repeat the option, one per model).",
)
@click.option(
    "--retrained",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Retrained-from-scratch checkpoints, same forget set.",
)
@click.option("--forget", "forget_spec", default=None, help="Forget set (default: what the unlearned models forgot).")
@options("data_dir", "device", "quiet")
@out_file("the JSON report (per-example epsilons too).")
@opt("force")
@with_logging
def epsilon_cmd(unlearned, retrained, forget_spec, data_dir, device, quiet, out, force) -> None:
    """The NeurIPS-2023 unlearning-challenge score between unlearned and retrained models."""
    from .epsilon import epsilon_score, logit_confidence

    if len(unlearned) < 2 or len(retrained) < 2:
        raise ConfigError("the epsilon metric needs at least 2 unlearned and 2 retrained models")
    if len(unlearned) != len(retrained):
        raise ConfigError(
            f"the epsilon metric compares as many unlearned as retrained models "
            f"(got {len(unlearned)} and {len(retrained)})"
        )
    if out:
        check_writable(out, force)
    metas = _same_training_set([*unlearned, *retrained])
    data = metas[0].load_data(data_dir)
    dev = resolve_device(device)
    forget = _forget_indices(metas[0], forget_spec, data, 0, None)
    wanted = forget.tolist()
    if forget_spec is None:
        for i, (path, m) in enumerate(zip((*unlearned, *retrained), metas)):
            if sorted(m.forgotten) != wanted:
                kind = "unlearned" if i < len(unlearned) else "retrained"
                raise ConfigError(f"{kind} checkpoint {path} forgot a different set than {unlearned[0]}; give --forget")
    else:  # the retrained models must never have seen a forget example
        for path, m in zip(retrained, metas[len(unlearned) :]):
            missing = set(wanted) - set(m.forgotten)
            if missing:
                raise ConfigError(
                    f"retrained checkpoint {path} was trained with {len(missing)} of the "
                    f"{len(wanted)} --forget examples (it records no such forget request)"
                )
    data = data.to(dev)
    fx, fy = data.train.images[forget.to(dev)], data.train.labels[forget.to(dev)]

    def scores(paths):
        confs, ra, ta = [], [], []
        keep = torch.ones(len(data.train), dtype=torch.bool)
        keep[forget] = False
        for p in paths:
            m = load_checkpoint(p, fingerprint=data.fingerprint()).model.to(dev).eval()
            with torch.no_grad():
                logits = torch.cat([m(as_unit(fx[s : s + 1024])) for s in range(0, len(fy), 1024)])
            confs.append(logit_confidence(logits.cpu(), fy.cpu()))
            ra.append(
                evaluate(m, data.train.images[keep.to(dev)], data.train.labels[keep.to(dev)], device=dev).accuracy
            )
            ta.append(evaluate(m, data.test.images, data.test.labels, device=dev).accuracy)
        return torch.stack(confs), sum(ra) / len(ra), sum(ta) / len(ta)

    u, ra_u, ta_u = scores(unlearned)
    r, ra_r, ta_r = scores(retrained)
    if ra_r == 0 or ta_r == 0:
        raise ConfigError(
            f"the retrained models' mean {'retain' if ra_r == 0 else 'test'} accuracy is 0: the final "
            f"score's accuracy ratio is undefined"
        )
    s = epsilon_score(u, r, ra_ratio=ra_u / ra_r, ta_ratio=ta_u / ta_r)
    rep = {
        **s.summary(),
        "ra_unlearned": ra_u,
        "ra_retrained": ra_r,
        "ta_unlearned": ta_u,
        "ta_retrained": ta_r,
        "models": {"unlearned": list(map(str, unlearned)), "retrained": list(map(str, retrained))},
        "eps": s.eps.tolist(),
    }
    click.echo(
        f"forget quality F {s.forget_quality:.4f}, final score {s.final:.4f} "
        f"(RA ratio {ra_u / ra_r:.3f}, TA ratio {ta_u / ta_r:.3f}; {len(forget)} examples, {len(unlearned)}+{len(retrained)} models)"
    )
    if len(unlearned) == 2:
        click.echo(
            "note: with 2 models per side ceil(ln(N - 1)) = 0, so no epsilon bucket scores points and F is 0 "
            "by construction (as in the challenge code); use more models"
        )
    _write(out, force, rep)


ULIRA_DEFAULTS = {
    "model": "mlp",
    "per_class": None,
    "splits": 64,
    "forget_sets": 4,
    "forget_fraction": 0.1,
    "splits_per_job": 8,
    "methods": ["finetune"],
    "clusters": None,
    "min_observations": 8,
    "bootstrap": 1000,
    "batched": True,
    "train": {"epochs": 30},
}


@main.command("ulira")
@click.argument("dataset")
@options("preset", "config")
@click.option("--model", "arch", default=None, help="Architecture of every model (default mlp).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs of every model (default 30).")
@click.option(
    "--method",
    "methods",
    multiple=True,
    help="Unlearning method under attack (repeatable; default finetune). Original and retrained are "
    "always attacked too.",
)
@opt("option", help="Method option (repeatable); applies to every --method that has the key.")
@opt("tuned")
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=None,
    help="For condensed methods: FDM buckets per class, built per split from its own original.",
)
@click.option("--splits", type=click.IntRange(min=3), default=None, help="Random halves of the pool (default 64).")
@click.option(
    "--forget-sets",
    type=click.IntRange(min=1),
    default=None,
    help="Forget sets drawn from each half (default 4; Deep Unlearn: 10).",
)
@click.option(
    "--forget-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Share of a half that one forget set takes (default 0.1).",
)
@click.option(
    "--splits-per-job", type=click.IntRange(min=1), default=None, help="Splits trained together in one job (default 8)."
)
@click.option(
    "--min-observations",
    type=click.IntRange(min=2),
    default=None,
    help="Per-example standard deviation from this many observations up, pooled below (default 8).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=None,
    help="Cluster-bootstrap replicates over splits (Gaussians refitted in each) for the 95% intervals (default 1000; 0: none).",
)
@options("per_class", "data_dir")
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    default="runs/jobs",
    show_default=True,
    help="Job store (directory): finished jobs are read back from it, never recomputed.",
)
@options("executor", "workers", "address")
@opt("seed", default=0, show_default=True)
@options("device", "quiet")
@out_file("the JSON report (setup, per-variant AUC, accuracy, TPR at low FPR with intervals).", required=True)
@opt("force")
@with_logging
def ulira_cmd(
    dataset,
    preset,
    config_file,
    arch,
    epochs,
    methods,
    options,
    tuned,
    clusters,
    splits,
    forget_sets,
    forget_fraction,
    splits_per_job,
    min_observations,
    bootstrap,
    per_class,
    data_dir,
    store,
    executor,
    workers,
    address,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """U-LiRA: per-example likelihood-ratio attack (Hayes et al., Deep Unlearn's protocol) over models trained on
    random halves of the pool, on every --method and on the original and an independent retraining."""
    from dcforget.config import resolve_config, section
    from dcforget.jobs import JobStore, make_executor
    from unlearn.methods import METHODS

    from .ulira import UliraSetup, expected_observations, report, run

    check_writable(out, force)
    JobStore(store).check_writable()  # before any training, not after the first job
    overrides = {
        "model": arch,
        "splits": splits,
        "forget_sets": forget_sets,
        "forget_fraction": forget_fraction,
        "splits_per_job": splits_per_job,
        "methods": list(dict.fromkeys(methods)) or None,
        "clusters": clusters,
        "min_observations": min_observations,
        "bootstrap": bootstrap,
        "per_class": per_class,
        "train": {"epochs": epochs},
    }
    config = resolve_config({"ulira": ULIRA_DEFAULTS}, preset, config_file, {"ulira": overrides})
    u = section(config, "ulira", set(ULIRA_DEFAULTS))
    method_names = list(u["methods"])
    known = {k: v for m in method_names for k, v in METHODS.get(m).defaults.items()}
    parsed = parse_options(options, known)
    method_opts = {m: {k: v for k, v in parsed.items() if k in METHODS.get(m).defaults} for m in method_names}
    used = {}
    if tuned:  # tuned options (for random forgetting on this dataset and model) under the --option ones
        from unlearn.tuned import find_tuned

        for m in method_names:
            t = find_tuned(
                m,
                dataset,
                u["model"],
                METHODS.get(m).defaults,
                forget=ForgetSpec.parse(f"random:{u['forget_fraction']}"),
            )
            if t is not None:
                method_opts[m] = {**t.options, **method_opts[m]}
                used[m] = {"file": str(t.path), "preset": t.preset, **t.summary}
                if not quiet:
                    click.echo(f"using {t.describe()}; --untuned turns them off", err=True)
    setup = UliraSetup(
        dataset,
        u["model"],
        dict(u["train"]),
        method_opts,
        u["per_class"],
        0,
        u["splits"],
        u["forget_sets"],
        u["forget_fraction"],
        seed,
        u["clusters"],
        u["splits_per_job"],
        u["batched"],
    )
    if expected_observations(setup) < 2:
        raise ConfigError(
            f"an example would be forgotten in {expected_observations(setup):.1f} models on average: "
            f"use more splits, forget sets or a larger forget fraction"
        )
    load_data(dataset, data_dir, per_class, seed=0, val_fraction=0.0)  # a bad dataset fails here, before any job
    with make_executor(executor or "local", workers=workers or 1, address=address) as ex:
        grid = run(setup, store, executor=ex, data_dir=data_dir, device=device, quiet=quiet)
        rep = report(setup, grid, min_observations=u["min_observations"], bootstrap=u["bootstrap"])
        rep["executor"] = ex.describe()
    from dcforget.provenance import run_meta

    rep = {"meta": run_meta(resolve_device(device), seed=seed), "config": config, "tuned": used, **rep}
    for v, r in rep["attacks"].items():
        ci = r.get("auc_ci")
        shown = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        click.echo(
            f"U-LiRA on {v:12s} AUC {r['auc']:.3f}{shown}, accuracy {r['accuracy']:.3f}, "
            f"TPR@1%FPR {r['tpr_at_1pct_fpr']:.3f}, TPR@0.1%FPR {r['tpr_at_0.1pct_fpr']:.3f} "
            f"({r['pairs']} forget examples in {r['target_models']} models)"
        )
    j = rep["jobs"]
    click.echo(
        f"{setup.splits} splits x {setup.forget_sets} forget sets in {j['count']} jobs "
        f"({j['computed_now']} computed now, {j['reused']} read back) in {j['wall_s']:.0f} s"
    )
    _write(out, force, rep)


@main.command("metrics")
@one_model_options
def metrics_cmd(checkpoint, forget_spec, data_dir, seed, device, quiet, out, force) -> None:
    """DC-U's unlearning metric (gradient matching, forget vs retain) and overfitting metric on the forget set."""
    from dcforget.overfit import overfitting_scores

    from .unlearning_metric import unlearning_metric

    meta, data, model, dev = _open_one(checkpoint, data_dir, device, out, force)
    forget = _forget_indices(meta, forget_spec, data, seed, model)
    keep = torch.ones(len(data.train), dtype=torch.bool)
    keep[forget] = False
    retain = torch.nonzero(keep).flatten()
    um = unlearning_metric(model, data.train.images, data.train.labels, forget, retain)
    over = overfitting_scores(model, data.train.images[forget], data.train.labels[forget])
    rep = {
        **um,
        "overfitting_metric_forget_mean": float(over.mean()),
        "forget_size": len(forget),
        "checkpoint": str(checkpoint),
    }
    value = um["unlearning_metric"]
    shown = f"{value:.2f}" if value is not None else "n/a (the forget set's classes have no retain samples left)"
    click.echo(
        f"unlearning metric {shown} (higher: forget data pulls unlike retain data); "
        f"overfitting metric on the forget set {float(over.mean()):.4g}"
    )
    _write(out, force, rep)


@main.command("invert")
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Model(s) to invert, e.g. original, unlearned and retrained (repeat the option).",
)
@click.option(
    "--forget", "forget_spec", default=None, help="Forget set to compare with (default: what the first forgot)."
)
@click.option(
    "--evaluator",
    type=click.Path(dir_okay=False),
    default=None,
    help="An independently trained model: feature cosine and recognition accuracy of reconstructions.",
)
@click.option(
    "--method",
    "how",
    type=click.Choice(["class", "condensive"]),
    default="class",
    show_default=True,
    help="class: optimise inputs per class; condensive: DC-U's generator inversion over K-means sub-classes.",
)
@click.option(
    "--images-per-class",
    "per_class",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Reconstructions per class (condensive: the sub-classes).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="class: optimisation steps; condensive: generator epochs.",
)
@click.option(
    "--pool",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
    help="condensive: the attacker's images (train reproduces the reference, which uses the training set).",
)
@click.option(
    "--pool-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="condensive: at most this many of the pool's images per class (seeded subsample).",
)
@dir_output_options("PNG grids and report.json.")
def invert_cmd(
    checkpoints,
    forget_spec,
    evaluator,
    how,
    per_class,
    steps,
    pool,
    pool_per_class,
    data_dir,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """Model inversion (class-representative or DC-U's condensive), scored against the forget set (SSIM, feature
    cosine, an evaluator's accuracy) so original, unlearned and retrained models compare with numbers."""
    from dcforget.images import save_grid

    from .inversion import condensive_invert, invert_classes, score_reconstructions

    out = Path(out)
    names = [Path(c).parent.name if Path(c).name == "model.pt" else Path(c).stem for c in checkpoints]
    if len(set(names)) != len(names):
        names = [f"{i}-{n}" for i, n in enumerate(names)]
    for n in names:
        check_writable(out / f"{n}.png", force)
    check_writable(out / "report.json", force)
    metas = _same_training_set(list(checkpoints))
    data = metas[0].load_data(data_dir)
    dev = resolve_device(device)
    first = load_checkpoint(checkpoints[0], fingerprint=data.fingerprint()).model.to(dev)
    forget = _forget_indices(metas[0], forget_spec, data, seed, first)
    ev = load_checkpoint(evaluator, dataset=data.info.name).model.to(dev) if evaluator else None
    fx, fy = data.train.images[forget], data.train.labels[forget]
    classes = sorted(set(fy.tolist()))
    report = {
        "forget_size": len(forget),
        "classes": classes,
        "method": how,
        "per_class": per_class,
        "steps": steps,
        "pool": pool if how == "condensive" else None,
        "pool_per_class": pool_per_class,
        "models": {},
    }
    grids = []
    for path, name in zip(checkpoints, names):
        model = load_checkpoint(path, fingerprint=data.fingerprint()).model.to(dev)
        if how == "class":
            recon, targets = invert_classes(
                model,
                data.info.num_classes,
                data.info.image_shape,
                per_class=per_class,
                steps=steps,
                seed=seed,
                classes=classes,
            )
        else:
            recon, targets = condensive_invert(
                model,
                data,
                pool=pool,
                subclasses=per_class,
                epochs=steps,
                classes=classes,
                seed=seed,
                pool_per_class=pool_per_class,
                quiet=quiet,
            )
        grids.append([recon[targets == c] for c in classes])
        report["models"][name] = {"checkpoint": str(path), **score_reconstructions(recon, targets, fx, fy, ev)}
        r = report["models"][name]
        click.echo(
            f"{name}: SSIM to nearest forget image {r['ssim']:.3f}"
            + (f", feature cosine {r['feature_cosine']:.3f}, evaluator acc {r['evaluator_accuracy']:.2f}" if ev else "")
            + f" -> {out / (name + '.png')}"
        )
    with atomic_paths([*(out / f"{n}.png" for n in names), out / "report.json"], force=force) as tmps:  # all or none
        for rows, tmp in zip(grids, tmps):
            save_grid(rows, tmp, columns=per_class, scale=3, force=True)
        tmps[-1].write_text(json.dumps(report, indent=2))


@main.command("defend")
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="The model to defend.")
@click.option(
    "--from-condensed",
    "condensed_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Condensed file of the checkpoint's training set (for the default unlearning method).",
)
@click.option("--method", default=None, help="Unlearning method for MU-regularisation (default: condensed).")
@opt("option", help="Unlearning-method option (repeatable).")
@click.option("--dp/--no-dp", default=True, show_default=True, help="Train the DP-SGD baseline (needs Opacus).")
@click.option("--dp-epsilon", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--dp-delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-5, show_default=True)
@click.option("--dp-epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--dp-lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--dp-batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--dp-max-grad-norm", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True)
@dir_output_options("report.json and the MU-regularised model (mu-regularised.pt).")
def defend_cmd(
    checkpoint,
    condensed_file,
    method,
    options,
    dp,
    dp_epsilon,
    dp_delta,
    dp_epochs,
    dp_lr,
    dp_batch_size,
    dp_max_grad_norm,
    data_dir,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """DC-U's MU-regularisation (forget the overfitted samples) against a DP-SGD baseline: accuracy and MIA of the
    original, the MU-regularised and the DP-trained model."""
    import time

    from dcforget.checkpoint import save_checkpoint
    from dcforget.condensed_store import read_condensed
    from unlearn.methods import DEFAULT_METHOD, METHODS

    from .defend import mu_regularise, privacy_report, train_dp

    method = method or (DEFAULT_METHOD if condensed_file else None)
    if method is None:
        raise ConfigError("give --from-condensed FILE (the default method) or --method NAME")
    opts = parse_options(options, METHODS.get(method).defaults)
    out = Path(out)
    model_path, report_path = out / "mu-regularised.pt", out / "report.json"
    check_writable(model_path, force)
    check_writable(report_path, force)
    meta, data, model, dev = _open_one(checkpoint, data_dir, device, None, force)
    condensed = read_condensed(condensed_file) if condensed_file else None
    data = data.to(dev)
    res = mu_regularise(
        model, data, method=method, options=opts, condensed=condensed, device=dev, seed=seed, quiet=quiet
    )
    overfit = res.split.forget
    rows = {
        "original": privacy_report(model, data, overfit, dev, seed),
        "mu-regularised": {
            **privacy_report(res.model, data, overfit, dev, seed),
            "seconds": res.report["time"]["total_s"],
        },
    }
    report = {
        "checkpoint": str(checkpoint),
        "method": method,
        "options": opts,
        "overfit_size": len(overfit),
        "train_size": len(data.train),
        "seed": seed,
        "unlearning_report": res.report,
        "models": rows,
    }
    if dp:
        t0 = time.perf_counter()
        dp_model, info = train_dp(
            data,
            model,
            epochs=dp_epochs,
            lr=dp_lr,
            batch_size=dp_batch_size,
            target_epsilon=dp_epsilon,
            delta=dp_delta,
            max_grad_norm=dp_max_grad_norm,
            device=dev,
            seed=seed,
        )
        rows["dp-sgd"] = {
            **privacy_report(dp_model, data, overfit, dev, seed),
            **info,
            "seconds": time.perf_counter() - t0,
        }
    new_meta = {
        k: v
        for k, v in meta.to_dict().items()
        if k not in ("model", "toolkit_version", "torch_version", "created_utc", "metrics", "history")
    }
    new_meta.update(
        unlearned_from=str(checkpoint),
        unlearn_method=method,
        forgotten=overfit.tolist(),
        requests=[*meta.requests, "overfit"],
    )
    with atomic_paths([model_path, report_path], force=force) as (tmp_model, tmp_report):  # both or neither
        save_checkpoint(tmp_model, res.model, new_meta, force=True)
        tmp_report.write_text(json.dumps(report, indent=2))
    click.echo(f"{len(overfit)} of {len(data.train)} training samples flagged as overfit (Otsu)")
    click.echo("| model | train | test | overfit-set MIA | train-vs-test AUC | TPR@1%FPR |")
    click.echo("|---|---|---|---|---|---|")
    for name, r in rows.items():
        mia = f"{100 * r['overfit_mia']:.2f}" if "overfit_mia" in r else "n/a"
        click.echo(
            f"| {name} | {100 * r['train_acc']:.2f} | {100 * r['test_acc']:.2f} | {mia} | {r['train_auc']:.3f} | "
            f"{r['train_tpr_at_1pct_fpr']:.3f} |"
        )
    click.echo(f"wrote {model_path} and {report_path}")
