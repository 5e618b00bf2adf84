"""``condense``: build, inspect, preview and evaluate condensed sets (HDF5)."""

from __future__ import annotations

import json

import click
import torch

from dcforget.cli import Group, data_options, opt, options, out_file, out_options, run_options, with_logging
from dcforget.condensed_store import read_condensed
from dcforget.config import resolve_config, section
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.images import save_grid
from dcforget.io import atomic_path, check_writable
from dcforget.models import MODELS
from dcforget.runtime import resolve_device
from dcforget.train import TrainConfig

from .methods import CONDENSERS
from .request import DEFAULT_CLUSTERS, DEFAULT_CONDENSER, CondenseRequest, condense_request


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Dataset condensation into self-describing HDF5 files.

    \b
    condense build cifar10 --method fdm --clusters 450 --checkpoint runs/cifar10-cnn/original.pt
    condense inspect runs/condensed/cifar10-fdm-450.h5
    condense preview runs/condensed/cifar10-fdm-450.h5 --out grid.png
    condense evaluate runs/condensed/cifar10-fdm-450.h5 --model convnet --seeds 3
    """


@main.command("build")
@click.argument("dataset")
@click.option(
    "--method", default=None, help=f"Condenser: {', '.join(CONDENSERS.names())} (default {DEFAULT_CONDENSER})."
)
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=None,
    help=f"K-means buckets per class for bucket-based methods (fdm, mi, kmeans); DC-U uses {DEFAULT_CLUSTERS}.",
)
@click.option("--ipc", type=click.IntRange(min=1), default=None, help="Images per class (dm, herding, random).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Trained model whose embeddings make the buckets (and FDM/MI's targets).",
)
@click.option(
    "--model",
    "arch",
    default=None,
    help="Without --checkpoint: train this architecture first (saved beside --out as *-original.pt).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help=f"Epochs of that training (default {TrainConfig().epochs}).",
)
@opt("option", help="A method option, e.g. --option steps=50 (repeatable); see `condense methods`.")
@data_options
@run_options
@out_options("HDF5 file to write (default runs/condensed/DATASET-METHOD-N.h5).")
@with_logging
def build_cmd(
    dataset,
    method,
    clusters,
    ipc,
    checkpoint,
    arch,
    epochs,
    options,
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
    """Condense DATASET's training set into an HDF5 file."""
    request = CondenseRequest(
        dataset,
        method=method,
        clusters=clusters,
        ipc=ipc,
        checkpoint=checkpoint,
        model=arch,
        epochs=epochs,
        option_pairs=tuple(options),
        data_dir=data_dir,
        val_fraction=val_fraction,
        per_class=per_class,
        download=download,
        config_file=config_file,
        preset=preset,
        seed=seed,
        device=device,
        out=out,
        force=force,
    )
    res = condense_request(request, quiet=quiet, log=click.echo)
    cs, s = res.condensed, res.seconds
    click.echo(
        f"{res.method}: {len(cs)} images, {len(cs)} buckets ({cs.num_classes} classes) from {cs.train_size} "
        f"training images in {s['total']:.1f} s (embed {s['embed']:.1f}, buckets {s['buckets']:.1f}, "
        f"condense {s['condense']:.1f}) -> {res.out}"
    )


@main.command("methods")
def methods_cmd() -> None:
    """List the condensers with their options and defaults."""
    for name in CONDENSERS.names():
        c = CONDENSERS.get(name)
        kind = "--clusters" if c.bucket_based else "--ipc"
        opts = ", ".join(f"{k}={v}" for k, v in c.defaults.items()) or "(no options)"
        click.echo(f"{name:8s} {kind:10s} {c.summary}\n{'':19s}{opts}")


@main.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
def inspect_cmd(file) -> None:
    """Print the schema, counts per class, buckets, provenance and config of a condensed set."""
    cs = read_condensed(file)
    sizes = cs.bucket_sizes().float()
    counts = torch.bincount(cs.labels, minlength=cs.num_classes).tolist()
    real = int((cs.source_indices >= 0).sum())
    click.echo(f"file:        {file}")
    click.echo(f"schema:      dcforget.condensed_set v1, created {cs.created_utc}")
    click.echo(f"method:      {cs.method} (seed {cs.seed})")
    click.echo(
        f"dataset:     {cs.dataset_spec}, {cs.num_classes} classes, images {tuple(cs.image_shape)} in [0,1] "
        f"(range {float(cs.images.min()):.3f}..{float(cs.images.max()):.3f})"
    )
    click.echo(f"images:      {len(cs)}; per class: {counts}")
    click.echo(
        f"buckets:     {len(cs)}, size min {int(sizes.min())} / median {float(sizes.median()):.0f} / "
        f"max {int(sizes.max())}, covering {len(torch.unique(cs.bucket_indices))} of {cs.train_size} training images"
    )
    click.echo(
        f"provenance:  {real} copies of real training images, {len(cs) - real} synthetic; influence "
        f"'{cs.influence}'; training-set sha256 {cs.train_fingerprint[:16]}..."
    )
    click.echo(f"embedder:    {cs.embedder}")
    for name, group in cs.extra_groups.items():
        keys = ", ".join(f"{k}={v}" if not isinstance(v, torch.Tensor) else f"{k}[{len(v)}]" for k, v in group.items())
        click.echo(f"group {name}: {keys}")
    click.echo("config:      " + json.dumps(cs.config, sort_keys=True))


@main.command("preview")
@click.argument("file", type=click.Path(dir_okay=False))
@out_file("the PNG grid.", required=True)
@click.option(
    "--columns",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Images shown per class (one row per class).",
)
@click.option("--scale", type=click.IntRange(min=1, max=8), default=2, show_default=True, help="Pixel upscaling.")
@opt("force")
def preview_cmd(file, out, columns, scale, force) -> None:
    """Write a PNG grid: one row per class, the first --columns images of each."""
    cs = read_condensed(file)
    check_writable(out, force)
    offsets = cs.class_offsets.tolist()
    rows = [cs.images[offsets[k] : offsets[k + 1]] for k in range(cs.num_classes)]
    save_grid(rows, out, columns=columns, scale=scale, force=force)
    click.echo(f"wrote {out}: {cs.num_classes} rows x up to {columns} images")


@main.command("evaluate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--model", "arch", default="convnet", show_default=True, help="Architecture trained on the set.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Runs (seeds 0..N-1).")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default 1000; cpu preset 300)."
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--dsa/--no-dsa", default=True, show_default=True, help="DSA augmentation while training.")
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (cpu preset: where the hardware has it).")
@options("data_dir", "download", "preset", "device", "quiet")
@out_options("the result as JSON (besides printing it).")
@with_logging
def evaluate_cmd(
    file, arch, seeds, epochs, lr, batch_size, dsa, bf16, data_dir, download, preset, device, quiet, out, force
) -> None:
    """Train fresh ARCH models on the condensed set only; report real test accuracy, mean +- std over seeds."""
    from .evaluate import evaluate_condensed

    config = resolve_config(
        {"evaluate": {"epochs": 1000, "bf16": False}}, preset, None, {"evaluate": {"epochs": epochs, "bf16": bf16}}
    )
    ev = section(config, "evaluate")
    MODELS.get(arch)
    cs = read_condensed(file)
    if out:
        check_writable(out, force)
    dev = resolve_device(device)
    data = load_data(cs.dataset_spec, data_dir, seed=0, download=download)
    if data.info.num_classes != cs.num_classes or data.info.image_shape != cs.image_shape:
        raise ConfigError(f"{file} does not match dataset {cs.dataset}'s classes or image shape")
    res = evaluate_condensed(
        cs,
        data.test.to(dev),
        arch,
        device=dev,
        seeds=seeds,
        epochs=int(ev["epochs"]),
        lr=lr,
        batch_size=batch_size,
        dsa=dsa,
        bf16=bool(ev["bf16"]),
        quiet=quiet,
    )
    res["file"], res["method"] = str(file), cs.method
    click.echo(
        f"{cs.method} ({len(cs)} images) -> {arch}: test acc {100 * res['mean']:.2f} +- {100 * res['std']:.2f}% "
        f"over {seeds} seeds ({int(ev['epochs'])} epochs, DSA {'on' if dsa else 'off'})"
    )
    if out:
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
