"""``attacks``: membership inference, U-LiRA, the epsilon metric, DC-U's metrics and model inversion."""

from __future__ import annotations

import click

from dcforget.cli import Group, opt, options, out_dir, out_file, with_logging
from unlearn.tuned import choice_line

from .request import (
    ULIRA_DEFAULTS,
    DefendRequest,
    EpsilonRequest,
    InvertRequest,
    MetricsRequest,
    MiaRequest,
    UliraCompareRequest,
    UliraRequest,
    epsilon_request,
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Privacy attacks on (unlearned) models.

    \b
    attacks mia --checkpoint runs/unlearn/r10/model.pt --out mia.json
    attacks epsilon --unlearned u0.pt --unlearned u1.pt --retrained r0.pt --retrained r1.pt --out eps.json
    """


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
    request = MiaRequest(checkpoint, forget_spec, data_dir, seed, device, out, force, svc=svc, svc_max=svc_max)
    rep = request.prepare().run()
    line = (
        f"MIA {100 * rep['mia']:.2f}% (indiscernibility {rep['indiscernibility']:.3f}), AUC "
        f"{rep['auc']:.3f}, TPR@1%FPR {rep['tpr_at_1pct_fpr']:.3f}; {rep['members']} members vs "
        f"{rep['non_members']} non-members; entropy-LR member rate {rep['entropy_lr_forget_member_rate']:.3f}"
    )
    if svc:
        line += f"; SVC-MIA efficacy (confidence) {rep['svc_mia']['efficacy']['confidence']:.3f}"
    click.echo(line)


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
    request = EpsilonRequest(unlearned, retrained, forget_spec, data_dir=data_dir, device=device, out=out, force=force)
    res = epsilon_request(request)
    s = res.score
    click.echo(
        f"forget quality F {s.forget_quality:.4f}, final score {s.final:.4f} "
        f"(RA ratio {res.ra_ratio:.3f}, TA ratio {res.ta_ratio:.3f}; {res.forget_size} examples, "
        f"{len(unlearned)}+{len(retrained)} models)"
    )
    if len(unlearned) == 2:
        click.echo(
            "note: with 2 models per side ceil(ln(N - 1)) = 0, so no epsilon bucket scores points and F is 0 "
            "by construction (as in the challenge code); use more models"
        )


@main.command("ulira")
@click.argument("dataset")
@options("preset", "config")
@click.option("--model", "arch", default=None, help=f"Architecture of every model (default {ULIRA_DEFAULTS['model']}).")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help=f"Training epochs of every model (default {ULIRA_DEFAULTS['train']['epochs']}).",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    help=f"Unlearning method under attack (repeatable; default {', '.join(ULIRA_DEFAULTS['methods'])}): NAME, or "
    "'NAME (reduced)' to serve it the reduced retain set of an FDM file built per split ('NAME (full)': the full "
    "one, as NAME). Original and retrained are always attacked too.",
)
@opt("option", help="Method option (repeatable); applies to every --method that has the key.")
@opt("tuned")
@click.option(
    "--options-from",
    "options_from",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A tuned-options file (`experiments tune`) to use for the method it names whatever setting it was tuned "
    "on, or POLICY.json#KIND: the options that policy search chose on validation for each --method it has a study "
    "of (repeatable); without it, tuned files are used only when tuned on the setting the methods run in.",
)
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=None,
    help="For condensed methods: FDM buckets per class, built per split from its own original.",
)
@click.option(
    "--splits",
    type=click.IntRange(min=3),
    default=None,
    help=f"Random halves of the pool (default {ULIRA_DEFAULTS['splits']}).",
)
@click.option(
    "--forget-sets",
    type=click.IntRange(min=1),
    default=None,
    help=f"Forget sets drawn from each half (default {ULIRA_DEFAULTS['forget_sets']}; Deep Unlearn: 10).",
)
@click.option(
    "--forget-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help=f"Share of a half that one forget set takes (default {ULIRA_DEFAULTS['forget_fraction']}).",
)
@click.option(
    "--forget-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per forget set (a person's request, e.g. 10 or 100), instead of --forget-fraction.",
)
@click.option(
    "--targets",
    type=click.IntRange(min=2),
    default=None,
    help="With --forget-size: draw the forget sets from this many pool examples (fixed by --seed), so each is "
    "forgotten in about splits x forget-sets x forget-size / targets models.",
)
@click.option(
    "--splits-per-job",
    type=click.IntRange(min=1),
    default=None,
    help=f"Splits trained together in one job (default {ULIRA_DEFAULTS['splits_per_job']}).",
)
@click.option(
    "--min-observations",
    type=click.IntRange(min=2),
    default=None,
    help="Per-example standard deviation from this many observations up, pooled below (default "
    f"{ULIRA_DEFAULTS['min_observations']}).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    default=None,
    help="Cluster-bootstrap replicates over splits (Gaussians refitted in each) for the 95% intervals "
    f"(default {ULIRA_DEFAULTS['bootstrap']}; 0: none).",
)
@options("per_class")
@click.option(
    "--pool-seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the capped pool's draw (--per-class N images per class): another seed gives another pool, on "
    "which options can be chosen without reading the reported pool's attack.",
)
@options("data_dir")
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
    options_from,
    clusters,
    splits,
    forget_sets,
    forget_fraction,
    forget_size,
    targets,
    splits_per_job,
    min_observations,
    bootstrap,
    per_class,
    pool_seed,
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
    request = UliraRequest(
        dataset,
        out,
        model=arch,
        epochs=epochs,
        methods=tuple(methods),
        option_pairs=tuple(options),
        tuned=tuned,
        options_from=tuple(options_from),
        clusters=clusters,
        splits=splits,
        forget_sets=forget_sets,
        forget_fraction=forget_fraction,
        forget_size=forget_size,
        targets=targets,
        splits_per_job=splits_per_job,
        min_observations=min_observations,
        bootstrap=bootstrap,
        per_class=per_class,
        pool_seed=pool_seed,
        data_dir=data_dir,
        store=store,
        executor=executor,
        workers=workers,
        address=address,
        preset=preset,
        config_file=config_file,
        seed=seed,
        device=device,
        force=force,
    )
    prepared = request.prepare()
    for choice in prepared.tuned_choices.values():  # which tuned file each method uses, or why none (as `unlearn`)
        line = choice_line(choice)
        if line is not None:
            click.echo(line, err=True)
    rep = prepared.run(quiet=quiet)
    for v, r in rep["attacks"].items():
        ci = r.get("auc_ci")
        shown = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        click.echo(
            f"U-LiRA on {v:12s} AUC {r['auc']:.3f}{shown}, accuracy {r['accuracy']:.3f}, "
            f"TPR@1%FPR {r['tpr_at_1pct_fpr']:.3f}, TPR@0.1%FPR {r['tpr_at_0.1pct_fpr']:.3f} "
            f"({r['pairs']} forget examples in {r['target_models']} models)"
        )
        d = r["diagnosis"]
        corr = "n/a" if d["mean_correlation"] is None else f"{d['mean_correlation']:.2f}"
        click.echo(
            f"  {v}: forget confidence {d['shift']:+.2f} sd from never-seen (> 0 under-forgets), spread "
            f"{d['spread']:.2f}x never-seen's, per-example means correlate {corr}"
        )
    j, setup = rep["jobs"], prepared.setup
    click.echo(
        f"{setup.splits} splits x {setup.forget_sets} forget sets in {j['count']} jobs "
        f"({j['computed_now']} computed now, {j['reused']} read back) in {j['wall_s']:.0f} s"
    )


@main.command("ulira-compare")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--variant", default=None, help="Variant of A (default: its only method variant).")
@click.option("--against", default=None, help="Variant of B (default: --variant, or B's only method variant).")
@out_file("the comparison as JSON (optional).")
@opt("force")
@with_logging
def ulira_compare_cmd(a, b, variant, against, out, force) -> None:
    """AUC of a U-LiRA report's variant minus another's, with a paired interval: two reports of the same pool,
    splits, forget sets and seed (e.g. two option sets of one method) draw the same splits in every bootstrap
    replicate, so their difference is read per draw, much tighter than two separate intervals.

    \b
    attacks ulira-compare candidate.json defaults.json
    """
    r = UliraCompareRequest(a, b, variant=variant, against=against, out=out, force=force).compare()
    lo, hi = r["difference_ci"]
    click.echo(
        f"U-LiRA AUC of {r['a']['variant']} ({a}) minus {r['b']['variant']} ({b}): {r['difference']:+.3f} "
        f"[{lo:+.3f}, {hi:+.3f}] (paired cluster bootstrap, {r['replicates_paired']} draws; below zero in "
        f"{100 * r['share_below_zero']:.1f}% of them)"
    )


@main.command("metrics")
@one_model_options
def metrics_cmd(checkpoint, forget_spec, data_dir, seed, device, quiet, out, force) -> None:
    """DC-U's unlearning metric (gradient matching, forget vs retain) and overfitting metric on the forget set."""
    rep = MetricsRequest(checkpoint, forget_spec, data_dir, seed, device, out, force).prepare().run()
    value = rep["unlearning_metric"]
    shown = f"{value:.2f}" if value is not None else "n/a (the forget set's classes have no retain samples left)"
    click.echo(
        f"unlearning metric {shown} (higher: forget data pulls unlike retain data); "
        f"overfitting metric on the forget set {rep['overfitting_metric_forget_mean']:.4g}"
    )


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
    request = InvertRequest(
        tuple(checkpoints),
        out,
        forget_spec,
        evaluator,
        how,
        per_class,
        steps,
        pool,
        pool_per_class,
        data_dir=data_dir,
        seed=seed,
        device=device,
        force=force,
    )
    request.prepare().run(quiet=quiet, log=click.echo)


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
    request = DefendRequest(
        checkpoint,
        out,
        condensed_file,
        method,
        tuple(options),
        dp,
        dp_epsilon,
        dp_delta,
        dp_epochs,
        dp_lr,
        dp_batch_size,
        dp_max_grad_norm,
        data_dir=data_dir,
        seed=seed,
        device=device,
        force=force,
    )
    prepared = request.prepare()
    report = prepared.run(quiet=quiet)
    model_path, report_path, rows = prepared.model_path, prepared.report_path, report["models"]
    click.echo(f"{report['overfit_size']} of {report['train_size']} training samples flagged as overfit (Otsu)")
    click.echo("| model | train | test | overfit-set MIA | train-vs-test AUC | TPR@1%FPR |")
    click.echo("|---|---|---|---|---|---|")
    for name, r in rows.items():
        mia = f"{100 * r['overfit_mia']:.2f}" if "overfit_mia" in r else "n/a"
        click.echo(
            f"| {name} | {100 * r['train_acc']:.2f} | {100 * r['test_acc']:.2f} | {mia} | {r['train_auc']:.3f} | "
            f"{r['train_tpr_at_1pct_fpr']:.3f} |"
        )
    click.echo(f"wrote {model_path} and {report_path}")


if __name__ == "__main__":
    main()
