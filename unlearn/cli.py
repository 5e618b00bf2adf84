"""``unlearn``: unlearning requests, and training and evaluating the original models.

The ``unlearn`` command group is built here: :data:`main` is the stage's own group, and :func:`build_group` makes
the group with commands a later layer adds (the experiments layer adds ``reproduce`` and ``demo``; the console
script is ``experiments.cli:unlearn_main``), so no stage imports the layer above it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import click

from dcforget.checkpoint import open_checkpoint, save_checkpoint
from dcforget.cli import Group, data_options, opt, options, out_dir, out_options, run_options, with_logging
from dcforget.config import check_options, parse_options, resolve_config, section
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.io import atomic_paths, check_writable
from dcforget.models import MODELS
from dcforget.runtime import resolve_device
from dcforget.train import OPTIMIZERS, SCHEDULES, TrainConfig, checkpoint_meta, evaluate, train_defaults, train_on

from .request import UnlearnRequest
from .tuned import choice_line


@click.group(cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--from-condensed",
    "condensed_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Condensed set (condense build): the default method's reduced retain set, and any method's with "
    "--retain reduced.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="The model to unlearn from (the original, or an earlier request's output).",
)
@click.option(
    "--forget",
    "forget_spec",
    default=None,
    help="Forget spec: random:F, class:C, classes:C1,C2[:F], indices:FILE, overfit; or a correction request: "
    "labels:FILE (index,label lines), features:EDIT[:fill=V]:FILE (EDIT patch=R,C,H,W, channel=C or mask=M.npy).",
)
@click.option("--method", default=None, help="Unlearning method (default: condensed); see `unlearn methods`.")
@click.option("--condensed-model", is_flag=True, help="DC-U's condensed-model mode (= --method condensed-model).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs of the method's training.")
@opt("option", help="A method option (repeatable; see `unlearn methods`); types are checked.")
@opt("tuned")
@click.option(
    "--options-from",
    "options_from",
    type=click.Path(dir_okay=False),
    default=None,
    help="A tuned-options file (`experiments tune`) to use for this method whatever setting it was tuned "
    "on; without it, tuned files are used only when tuned on the checkpoint's setting.",
)
@click.option(
    "--retain",
    "retain",
    type=click.Choice(["full", "reduced"]),
    default=None,
    help="The retain set the method trains on: the full retain set, or the audited reduced set of "
    "--from-condensed (condensed images resampled by the retain images they stand for); for any "
    "method that reads a retain set (`unlearn methods`: reads_retain). Default: the policy entry's "
    "when no --method is given, else full.",
)
@options("data_dir", "download")
@run_options
@out_dir("model.pt and report.json, written as one unit (default runs/unlearn/METHOD-SPEC).")
@opt("force")
@click.pass_context
@with_logging
def main(
    ctx,
    condensed_file,
    checkpoint,
    forget_spec,
    method,
    condensed_model,
    epochs,
    options,
    tuned,
    options_from,
    retain,
    data_dir,
    download,
    config_file,
    preset,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """Machine unlearning of image classifiers.

    \b
    unlearn train cifar10 --model cnn --per-class 4500 --epochs 30 --out runs/cifar10-cnn/original.pt
    unlearn --from-condensed runs/condensed/cifar10-fdm-450.h5 --checkpoint runs/cifar10-cnn/original.pt \\
            --forget random:0.1 --out runs/unlearn/r10
    unlearn --method retrain --checkpoint runs/cifar10-cnn/original.pt --forget class:2 --out runs/unlearn/retrain
    unlearn --method kde --retain reduced --from-condensed runs/condensed/cifar10-fdm-450.h5 \\
            --checkpoint runs/cifar10-cnn/original.pt --forget indices:request.txt --out runs/unlearn/kde-reduced
    unlearn compare runs/unlearn/*/report.json
    """
    if ctx.invoked_subcommand is not None:
        given = [
            p.opts[0]
            for p in ctx.command.params
            if ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:  # they belong to an unlearning request and would be silently ignored
            raise ConfigError(
                f"{', '.join(given)} before `{ctx.invoked_subcommand}` are options of an unlearning "
                f"request, not of `unlearn {ctx.invoked_subcommand}`; put options after the command name"
            )
        return
    if checkpoint is None and forget_spec is None and condensed_file is None:
        click.echo(ctx.get_help())
        return
    if condensed_model:
        if method not in (None, "condensed-model"):
            raise ConfigError("--condensed-model and --method name two different methods")
        method = "condensed-model"

    run_request_cli(
        condensed_file=condensed_file,
        checkpoint=checkpoint,
        forget_spec=forget_spec,
        method=method,
        epochs=epochs,
        options=options,
        tuned=tuned,
        data_dir=data_dir,
        download=download,
        config_file=config_file,
        preset=preset,
        seed=seed,
        device=device,
        quiet=quiet,
        out=out,
        force=force,
        options_from=options_from,
        retain=retain,
    )


@main.command("train")
@click.argument("dataset")
@click.option(
    "--model",
    "arch",
    default=None,
    help=f"Architecture: {', '.join(MODELS.names())} (default {train_defaults()['model']}).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default 30).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (default 256).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate (default 1e-3).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS.names()), default=None, help="Optimizer (default adam).")
@click.option("--schedule", type=click.Choice(SCHEDULES.names()), default=None, help="LR schedule (default constant).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None, help="Weight decay (default 0).")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast for speed (default off).")
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=None,
    help="Report test accuracy every N epochs (default 0: after the last only).",
)
@data_options
@run_options
@out_options("Checkpoint to write (default runs/DATASET-MODEL/original.pt).")
@with_logging
def train_cmd(
    dataset,
    arch,
    epochs,
    batch_size,
    lr,
    optimizer,
    schedule,
    weight_decay,
    bf16,
    eval_every,
    data_dir,
    val_fraction,
    per_class,
    download,
    config_file,
    preset,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """Train an original model on DATASET (cifar10, cifar100, svhn, mnist, fashionmnist, synthetic[:opts]).

    DC-U's recipe is the default: Adam, lr 1e-3, batch 256, 30 epochs, no augmentation."""
    overrides = {
        "model": arch,
        "seed": seed,
        "per_class": per_class,
        "val_fraction": val_fraction,
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "schedule": schedule,
            "weight_decay": weight_decay,
            "bf16": bf16,
            "eval_every": eval_every,
        },
    }
    config = resolve_config(train_defaults(), preset, config_file, overrides)
    config["dataset"] = dataset
    cfg = TrainConfig.from_dict(section(config, "train"))
    arch = config["model"]
    MODELS.get(arch)
    section(config, "model_options")
    out_path = Path(out or f"runs/{dataset.split(':')[0]}-{arch}/original.pt")
    check_writable(out_path, force)
    dev = resolve_device(device)
    data = load_data(
        dataset,
        data_dir,
        config["per_class"],
        seed=config["seed"],
        download=download,
        val_fraction=config["val_fraction"],
    ).to(dev)
    trained = train_on(
        data, arch, cfg, seed=config["seed"], device=dev, quiet=quiet, model_options=section(config, "model_options")
    )
    save_checkpoint(out_path, trained.model, checkpoint_meta(data, cfg, config["seed"], trained, config), force=force)
    m = trained.metrics()
    val = f"val acc {100 * m['val_acc']:.2f}%  " if "val_acc" in m else ""
    click.echo(
        f"{data.info.name} {arch}: train acc {100 * m['train_acc']:.2f}%  {val}test acc {100 * m['test_acc']:.2f}%  "
        f"({len(data.train)} train + {len(data.val) if data.val is not None else 0} validation images, {cfg.epochs} epochs, {m['train_seconds']:.1f} s, "
        f"{m['seconds_per_epoch']:.1f} s/epoch, {dev.type})"
    )
    click.echo(f"wrote {out_path}")


@main.command("train-certified")
@click.argument("dataset")
@click.option(
    "--l2",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="λ of the summed objective Σℓ + (λ/2)‖θ‖² + bᵀθ.",
)
@click.option(
    "--sigma",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="σ of the objective perturbation b ~ N(0, σ²I) (drawn from --seed).",
)
@click.option("--max-iter", type=click.IntRange(min=1), default=500, show_default=True, help="L-BFGS iterations.")
@data_options
@run_options
@out_options("Checkpoint to write (default runs/DATASET-logreg/certified.pt).")
@with_logging
def train_certified_cmd(
    dataset,
    l2,
    sigma,
    max_iter,
    data_dir,
    val_fraction,
    per_class,
    download,
    config_file,
    preset,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """Train the certified variant's model on DATASET: a logistic regression (`logreg`) fitted to the minimum of
    its L2-regularised, perturbed objective by L-BFGS. `second-order` correction requests on it report an (ε, δ)
    certificate (Warnecke et al.; Guo et al.)."""
    from .influence import train_certified

    overrides = {"model": "logreg", "seed": seed, "per_class": per_class, "val_fraction": val_fraction}
    config = resolve_config(train_defaults(), preset, config_file, overrides)
    config.update(dataset=dataset, certified={"l2": l2, "sigma": sigma, "max_iter": max_iter})
    out_path = Path(out or f"runs/{dataset.split(':')[0]}-logreg/certified.pt")
    check_writable(out_path, force)
    dev = resolve_device(device)
    data = load_data(
        dataset,
        data_dir,
        config["per_class"],
        seed=config["seed"],
        download=download,
        val_fraction=config["val_fraction"],
    ).to(dev)
    from dcforget.train import build_model

    model = build_model("logreg", data, config["seed"])
    model, tensors, info = train_certified(
        model,
        data.train.images,
        data.train.labels,
        l2=l2,
        sigma=sigma,
        seed=config["seed"],
        device=dev,
        max_iter=max_iter,
    )
    meta = checkpoint_meta(data, TrainConfig(), config["seed"], None, config, certified=info)
    save_checkpoint(out_path, model, meta, force=force, tensors=tensors)
    te = evaluate(model, data.test.images, data.test.labels, device=dev)
    click.echo(
        f"{data.info.name} logreg (certified: l2 {l2:g}, sigma {sigma:g}): test acc {100 * te.accuracy:.2f}%, gradient "
        f"residual {info['gradient_residual']:.2e} -> {out_path}"
    )


@main.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@options("data_dir", "download", "device")
def evaluate_cmd(checkpoint, data_dir, download, device) -> None:
    """Accuracy of CHECKPOINT on its own (capped) training set and on the test split."""
    dev = resolve_device(device)
    ckpt, data = open_checkpoint(checkpoint, data_dir, download)
    model = ckpt.model.to(dev)
    data = data.to(dev)
    tr = evaluate(model, data.train.images, data.train.labels, device=dev)
    te = evaluate(model, data.test.images, data.test.labels, device=dev)
    va = evaluate(model, data.val.images, data.val.labels, device=dev) if data.val is not None else None
    val = f"val acc {100 * va.accuracy:.2f}%  " if va is not None else ""
    click.echo(
        f"{checkpoint}: {ckpt.meta.arch} on {data.info.name}: train acc {100 * tr.accuracy:.2f}%  {val}"
        f"test acc {100 * te.accuracy:.2f}%  (train loss {tr.losses.mean():.4f}, test loss {te.losses.mean():.4f})"
    )


@main.command("methods")
def methods_cmd() -> None:
    """List the unlearning methods with their options and defaults."""
    from .methods import METHODS

    for name in METHODS.names():
        m = METHODS.get(name)
        caps = {
            "needs_condensed": "needs --from-condensed",
            "needs_offline": "needs an `unlearn offline` checkpoint",
            "trains_fresh": "trains a fresh model",
            "zero_shot": "uses no retain data",
            "auxiliary": "reads held-out validation images",
            "class_only": "class forgetting only",
            "reads_validation": "reads the validation split (tuned on its other half)",
            "reads_retain": "trains on a retain set (--retain reduced applies)",
            "corrects": "correction requests only (labels:FILE, features:EDIT:FILE)",
        }
        need = f" ({'; '.join(caps.get(c, c) for c in m.capabilities)})" if m.capabilities else ""
        source = f"\n{'':17s}source: {m.reference}" if getattr(m, "reference", None) else ""
        click.echo(
            f"{name:16s} {m.summary}{need}{source}\n{'':17s}" + ", ".join(f"{k}={v}" for k, v in m.defaults.items())
        )


@main.command("compare")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
def compare_cmd(reports) -> None:
    """Print several report.json files as one Markdown table, retraining first."""
    from .compare import comparison_table

    click.echo(comparison_table(reports))


@main.command("offline")
@click.option("--checkpoint", type=click.Path(dir_okay=False), required=True, help="The original model.")
@click.option(
    "--remembrance-ipc", type=click.IntRange(min=1), default=10, show_default=True, help="Remembrance images per class."
)
@click.option(
    "--remembrance-source",
    type=click.Choice(["heldout", "test"]),
    default="heldout",
    show_default=True,
    help="heldout: training images the per-class cap left out; test: the test split (the reference).",
)
@opt("option", help="Offline-phase option (iterations, final_epochs, intermediate_epochs, lr_final, ...).")
@options("data_dir", "download")
@run_options
@out_options("Offline checkpoint to write (default: beside --checkpoint, *-offline.pt).")
@with_logging
def offline_cmd(
    checkpoint,
    remembrance_ipc,
    remembrance_source,
    options,
    data_dir,
    download,
    config_file,
    preset,
    seed,
    device,
    quiet,
    out,
    force,
) -> None:
    """DC-U's offline phase: re-anchor the model on a remembrance set, before any request (dcu-reference)."""
    import time

    from .offline import OFFLINE_DEFAULTS, offline_phase, remembrance_set

    config = resolve_config({"seed": 0, "offline": {}}, preset, config_file, {"seed": seed})
    opts = {
        **check_options(section(config, "offline"), OFFLINE_DEFAULTS, " in [offline]"),
        **parse_options(options, OFFLINE_DEFAULTS),
    }
    out_path = Path(out or str(Path(checkpoint).with_name(Path(checkpoint).stem + "-offline.pt")))
    check_writable(out_path, force)
    dev = resolve_device(device)
    ck, data = open_checkpoint(checkpoint, data_dir, download)
    rem = remembrance_set(data, remembrance_ipc, remembrance_source, config["seed"], data_dir, download)
    data = data.to(dev)
    t0 = time.perf_counter()
    model = offline_phase(ck.model, data, rem, opts, device=dev, seed=config["seed"], quiet=quiet)
    seconds = time.perf_counter() - t0
    new_meta = {
        k: v
        for k, v in ck.meta.to_dict().items()
        if k not in ("model", "toolkit_version", "torch_version", "created_utc")
    }
    new_meta["offline"] = {
        "from": str(checkpoint),
        "options": {**OFFLINE_DEFAULTS, **opts},
        "seconds": seconds,
        "remembrance": {"source": rem.source, "ipc": remembrance_ipc, "indices": rem.indices.tolist()},
    }
    save_checkpoint(
        out_path,
        model,
        new_meta,
        force=force,
        tensors={"remembrance_images": rem.images, "remembrance_labels": rem.labels},
    )
    te = evaluate(model, data.test.images, data.test.labels, device=dev)
    click.echo(
        f"offline phase: {seconds:.1f} s, remembrance {len(rem.labels)} images ({rem.source}); "
        f"test acc {100 * te.accuracy:.2f}% -> {out_path}"
    )


def run_request_cli(
    *,
    condensed_file,
    checkpoint,
    forget_spec,
    method,
    epochs,
    options,
    data_dir,
    download,
    config_file,
    preset,
    seed,
    device,
    quiet,
    out,
    force,
    tuned: bool = True,
    options_from=None,
    retain: str | None = None,
) -> None:
    if checkpoint is None:
        raise ConfigError("an unlearning request needs --checkpoint (the model to unlearn from)")
    if forget_spec is None:
        raise ConfigError("an unlearning request needs --forget SPEC (random:F, class:C, classes:..., indices:FILE)")
    if options_from is not None and not tuned:
        raise ConfigError("--options-from and --untuned contradict each other: give one of them")
    defaults = {"method": None, "seed": 0, "unlearn": {}}  # no method: the policy's (unlearn.policy)
    config = resolve_config(defaults, preset, config_file, {"method": method, "seed": seed})
    method = config["method"]
    if method is None and not condensed_file:  # before the output check, so the message names the real problem
        raise ConfigError(
            "give a condensed file (--from-condensed FILE, for the default method) or a method (--method NAME)"
        )
    table = section(config, "unlearn").get(method, {}) if method else {}
    if not isinstance(table, dict):
        raise ConfigError(f"config section [unlearn.{method}] must be a table")
    request = UnlearnRequest(
        checkpoint,
        forget_spec,
        method,
        condensed_file,
        options=table,
        option_pairs=tuple(options),
        epochs=epochs,
        seed=config["seed"],
        device=device,
        data_dir=data_dir,
        download=download,
        tuned=tuned,
        options_from=options_from,
        retain=retain,
    )
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", forget_spec)[:40]
    out_dir = Path(out or f"runs/unlearn/{method or 'default'}-{slug}")
    model_path, report_path = out_dir / "model.pt", out_dir / "report.json"
    check_writable(model_path, force)  # before any work
    check_writable(report_path, force)
    prepared = request.prepare()
    if prepared.policy is not None:  # no --method: which policy entry the request follows, or the fallback
        click.echo(prepared.policy.line(prepared.setting), err=True)
    line = choice_line(prepared.tuned_choice) if prepared.tuned_choice is not None else prepared.tuned_note
    if line is not None:  # which tuned file the request uses, or why it uses none
        click.echo(line, err=True)
    res = prepared.run(quiet=quiet, config=config)
    rep = res.report
    report_text = json.dumps(rep, indent=2)
    with atomic_paths([model_path, report_path], force=force) as (tmp_model, tmp_report):  # both or neither
        save_checkpoint(
            tmp_model, res.model, prepared.output_meta(res), force=True, tensors=prepared.checkpoint.tensors
        )
        tmp_report.write_text(report_text)
    a = rep["reduced_set"]
    audit = (
        (
            f"; reduced set {a['reduced_size']} = {a['real_images_used']} real + {a['condensed_images_used']} condensed "
            f"({a['ratio_to_retain']:.2f}x retain), audit {'passed' if a['passed'] else 'FAILED'}"
        )
        if a
        else ""
    )
    served = rep.get("retain_served") or {}
    if served.get("source") == "reduced":
        audit += (
            f"; the method's retain set: {served['images']} reduced-set images standing for {served['stands_for']} "
            f"retain images, resampled by weight"
        )
    mia = "n/a (one image)" if rep["mia"] is None else f"{100 * rep['mia']:.2f}"
    click.echo(
        f"{prepared.method} on {forget_spec}: RA {100 * rep['retain_acc']:.2f}  FA {100 * rep['forget_acc']:.2f}  "
        f"TA {100 * rep['test_acc']:.2f}  MIA {mia}  time {rep['time']['total_s']:.1f} s "
        f"(assembly {rep['time']['assembly_s']:.2f}){audit}"
    )
    click.echo(f"wrote {model_path} and {report_path}")


def build_group(extra_commands: Iterable[click.Command] = ()) -> click.Group:
    """The ``unlearn`` command group with ``extra_commands`` added: the extension point through which a later layer
    adds commands to ``unlearn`` without this stage importing it (``experiments.cli`` builds the console script's
    group as ``build_group([reproduce_cmd, demo_cmd])``). A new group each call: :data:`main`, the stage's own
    group, is left as it is. A command whose name ``unlearn`` already has is refused (ValueError)."""
    group = Group(
        name=main.name,
        commands=dict(main.commands),
        invoke_without_command=main.invoke_without_command,
        callback=main.callback,
        params=list(main.params),
        help=main.help,
        context_settings=dict(main.context_settings),
    )
    for command in extra_commands:
        if command.name in group.commands:
            raise ValueError(f"`unlearn {command.name}` exists already; an extra command needs a name of its own")
        group.add_command(command)
    return group


# `unlearn concepts ...`: concept banks, the post-hoc CBM and concept ranking (unlearn.concepts)
from .concepts.cli import concepts as _concepts  # noqa: E402

main.add_command(_concepts)


if __name__ == "__main__":
    main()
