"""``unlearn concepts``: concept banks, the post-hoc CBM and the Integrated-Gradients ranking of a class's concepts.

\b
unlearn concepts discover --checkpoint runs/cifar10-cnn/original.pt --out runs/concepts/bank.h5 --preview grid.png
unlearn concepts learn --checkpoint runs/shapes-cnn/original.pt --examples concepts/ --out runs/concepts/bank.h5
unlearn concepts rank --checkpoint runs/cifar10-cnn/original.pt --bank runs/concepts/bank.h5 --class 4 --out rank.json
unlearn concepts preview runs/concepts/bank.h5 --out grid.png

Every input is checked before any work; a bad one (unknown concept, missing or empty concept folder, images of
another shape, a class out of range, a bank of another model) is one ``error: ...`` line and exit code 2, and
nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from dcforget.checkpoint import open_checkpoint
from dcforget.cli import Group, opt, options, with_logging
from dcforget.errors import ConfigError
from dcforget.io import atomic_path, check_writable
from dcforget.runtime import resolve_device
from dcforget.train import embed, evaluate

from .bank import ConceptError, learn_bank, preview_grid, read_bank, read_example_folders, read_example_h5, write_bank
from .discover import DISCOVER_DEFAULTS, discover_bank
from .pcbm import BASELINES, baseline_scores, check_class, fit_pcbm, rank_concepts


@click.group("concepts", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def concepts() -> None:
    """Concept banks (learned from example sets, or discovered), the post-hoc CBM and concept ranking."""


def _outputs(out: str, preview: str | None, force: bool) -> None:
    check_writable(out, force)
    if preview is not None:
        check_writable(preview, force)
        if Path(preview).resolve() == Path(out).resolve():
            raise ConfigError("--preview and --out name the same file")


def _save(bank, out, preview, force, config) -> None:
    write_bank(out, bank, force=force, config=config)
    if preview is not None:
        preview_grid(bank, preview, force=force)
    acc = ", ".join(f"{n} {a:.2f}" for n, a in zip(bank.names[:12], bank.val_acc.tolist()))
    more = " ..." if len(bank) > 12 else ""
    click.echo(f"{len(bank)} concepts (held-out CAV accuracy: {acc}{more}); {len(bank.dropped)} dropped")
    click.echo(f"wrote {out}" + (f" and {preview}" if preview else ""))


@concepts.command("discover")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="The trained classifier.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Concept bank to write (HDF5).")
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a PNG grid of each concept's top patches.",
)
@click.option(
    "--images-per-class",
    type=click.IntRange(min=2),
    default=DISCOVER_DEFAULTS["images_per_class"],
    show_default=True,
    help="Training images per class cut into patches.",
)
@click.option(
    "--clusters",
    type=click.IntRange(min=1),
    default=DISCOVER_DEFAULTS["clusters"],
    show_default=True,
    help="k-means clusters (candidate concepts) per class.",
)
@click.option(
    "--min-acc",
    type=click.FloatRange(0, 1),
    default=DISCOVER_DEFAULTS["min_acc"],
    show_default=True,
    help="Drop concepts whose CAV's held-out accuracy is lower.",
)
@options("data_dir", "download", "seed", "device", "force", "quiet")
@with_logging
def discover_cmd(
    checkpoint, out, preview, images_per_class, clusters, min_acc, data_dir, download, seed, device, force, quiet
):
    """The default concept bank: unsupervised discovery on the training set (patch embeddings clustered per class,
    a CAV per cluster), no external model or network."""
    _outputs(out, preview, force)
    dev = resolve_device(device)
    ckpt, data = open_checkpoint(checkpoint, data_dir, download)
    model = ckpt.model.to(dev).eval()
    opts = {"images_per_class": images_per_class, "clusters": clusters, "min_acc": min_acc}
    bank = discover_bank(model, data, device=dev, seed=seed or 0, **opts)
    bank.meta["checkpoint"] = str(checkpoint)
    _save(bank, out, preview, force, {"command": "discover", "checkpoint": str(checkpoint), "seed": seed or 0, **opts})


@concepts.command("learn")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="The trained classifier.")
@click.option(
    "--examples",
    required=True,
    type=click.Path(),
    help="A folder with one sub-folder of images per concept (or <concept>/pos and <concept>/neg), or an HDF5 file with one group per concept (pos, optional neg).",
)
@click.option(
    "--concept", "names", multiple=True, help="Learn only this concept (repeatable; default: every one given)."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Concept bank to write (HDF5).")
@click.option(
    "--preview",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a PNG grid of each concept's top examples.",
)
@click.option(
    "--min-acc",
    type=click.FloatRange(0, 1),
    default=0.7,
    show_default=True,
    help="Drop concepts whose CAV's held-out accuracy is lower.",
)
@options("data_dir", "download", "seed", "device", "force", "quiet")
@with_logging
def learn_cmd(checkpoint, examples, names, out, preview, min_acc, data_dir, download, seed, device, force, quiet):
    """Concept activation vectors from example sets a user gives, in the classifier's embedding space."""
    _outputs(out, preview, force)
    dev = resolve_device(device)
    ckpt, _ = open_checkpoint(checkpoint, data_dir, download)
    shape = tuple(ckpt.model.config["image_shape"])
    p = Path(examples)
    if p.is_dir():
        sets = read_example_folders(p, shape, list(names) or None)
    elif p.suffix.lower() in (".h5", ".hdf5"):
        sets = read_example_h5(p, shape, list(names) or None)
    else:
        raise ConceptError(f"--examples {p}: give a folder of concept folders or an .h5 file")
    model = ckpt.model.to(dev).eval()
    bank = learn_bank(
        model,
        sets,
        device=dev,
        seed=seed or 0,
        min_acc=min_acc,
        meta={"dataset": ckpt.meta.to_dict().get("dataset", "")},
    )
    _save(
        bank,
        out,
        preview,
        force,
        {
            "command": "learn",
            "checkpoint": str(checkpoint),
            "examples": str(examples),
            "seed": seed or 0,
            "min_acc": min_acc,
        },
    )


def pcbm_and_ranking(model, data, bank, device, *, lam: float = 1e-5, alpha: float = 0.99, baseline: str = "low"):
    """The PCBM of ``model`` over ``bank`` on ``data`` (fitted on the training split), its accuracy next to the
    original's, and each class's concepts ranked by IG over the class's training images. Returns a dict."""
    bank.check_model(model)
    f_tr = embed(model, data.train.images, device=device)
    s_tr = bank.scores(f_tr)
    val = None
    if data.val is not None:
        val = (bank.scores(embed(model, data.val.images, device=device)), data.val.labels)
    fitted = fit_pcbm(s_tr, data.train.labels, data.info.num_classes, lam=lam, alpha=alpha, val=val)
    s_te = bank.scores(embed(model, data.test.images, device=device))
    with torch.no_grad():
        pcbm_test = float((fitted.model(s_te).argmax(1).cpu() == data.test.labels.cpu()).float().mean())
    orig_test = evaluate(model, data.test.images, data.test.labels, device=device).accuracy
    base = baseline_scores(s_tr, baseline)
    ranking = rank_concepts(fitted.model, bank, s_tr, data.train.labels, base)
    w = torch.nn.functional.normalize(fitted.model.effective_weight.detach().cpu(), dim=1)
    sim = w @ w.T
    sim.fill_diagonal_(-2.0)
    return {
        "pcbm": {
            "train_acc": fitted.train_acc,
            "val_acc": fitted.val_acc,
            "test_acc": pcbm_test,
            "original_test_acc": orig_test,
            "sparsity": fitted.model.sparsity(),
            "lam": lam,
            "alpha": alpha,
            "baseline": baseline,
        },
        "ranking": {str(c): r for c, r in ranking.items()},
        # per class: the class whose PCBM weights over the concepts are closest (cosine): the concept-based donor
        "nearest_class": {str(c): int(sim[c].argmax()) for c in range(data.info.num_classes)},
        "_fitted": fitted,
        "_scores": s_tr,
        "_baseline": base,
    }


@concepts.command("rank")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), help="The trained classifier.")
@click.option(
    "--bank", "bank_file", required=True, type=click.Path(dir_okay=False), help="Its concept bank (discover or learn)."
)
@click.option(
    "--class", "classes", multiple=True, type=int, help="Rank this class's concepts (repeatable; default every class)."
)
@click.option("--concept", "concept_names", multiple=True, help="Also report where this concept ranks (repeatable).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="Concepts printed per class.")
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default="low",
    show_default=True,
    help="IG baseline: each concept's 5th percentile, mean, or 0.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSON file to write: the PCBM's accuracy and the full ranking.",
)
@options("data_dir", "download", "device", "force", "quiet")
@with_logging
def rank_cmd(
    checkpoint, bank_file, classes, concept_names, top, baseline, out, data_dir, download, device, force, quiet
):
    """Fit the post-hoc CBM over a bank and rank each class's concepts by Integrated Gradients (captum)."""
    if out is not None:
        check_writable(out, force)
    bank = read_bank(bank_file)
    for n in concept_names:
        bank.index(n)
    dev = resolve_device(device)
    ckpt, data = open_checkpoint(checkpoint, data_dir, download)
    for c in classes:
        check_class(c, data.info.num_classes)
    model = ckpt.model.to(dev).eval()
    res = pcbm_and_ranking(model, data, bank, dev, baseline=baseline)
    p = res["pcbm"]
    click.echo(
        f"PCBM over {len(bank)} concepts: test acc {100 * p['test_acc']:.2f}% (original {100 * p['original_test_acc']:.2f}%), "
        f"{100 * p['sparsity']:.0f}% zero weights"
    )
    chosen = [str(c) for c in classes] or sorted(res["ranking"], key=int)
    names = data.info.class_names
    for c in chosen:
        r = res["ranking"][c]
        tops = ", ".join(f"{x['concept']} {x['attribution']:+.3f}" for x in r[:top])
        donor = res["nearest_class"][c]
        click.echo(f"class {c} ({names[int(c)]}): {tops}; nearest class {donor} ({names[donor]})")
        for n in concept_names:
            pos = [x["concept"] for x in r].index(n)
            click.echo(f"  {n}: rank {pos + 1} of {len(r)}, attribution {r[pos]['attribution']:+.4f}")
    if out is not None:
        doc = {k: v for k, v in res.items() if not k.startswith("_")}
        doc.update(
            {"checkpoint": str(checkpoint), "bank": str(bank_file), "classes": chosen, "class_names": list(names)}
        )
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(json.dumps(doc, indent=2))
        click.echo(f"wrote {out}")


@concepts.command("preview")
@click.argument("bank_file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write: one row per concept.")
@opt("force")
def preview_cmd(bank_file, out, force):
    """A PNG grid of a bank's concepts: each row, one concept's top-scoring examples or patches."""
    check_writable(out, force)
    bank = read_bank(bank_file)
    preview_grid(bank, out, force=force)
    click.echo("rows: " + ", ".join(bank.names))
    click.echo(f"wrote {out}")


@concepts.command("shapes-examples")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder to write: CONCEPT/pos and CONCEPT/neg PNGs per concept.",
)
@click.option("--concept", "names", multiple=True, help="Only this concept (repeatable; default: all nine).")
@click.option("--per-concept", type=click.IntRange(min=2), default=50, show_default=True, help="Images per concept.")
@click.option(
    "--size",
    type=click.IntRange(16, 128),
    default=32,
    show_default=True,
    help="Image side (the dataset's size option).",
)
@options("seed", "force")
def shapes_examples_cmd(out, names, per_concept, size, seed, force):
    """Example sets of the known-concept dataset `shapes` (dcforget.shapes) as PNG folders, the input `unlearn
    concepts learn --examples` reads: CONCEPT/pos (images showing it) and CONCEPT/neg (another value of its
    attribute)."""
    import os
    import shutil
    import tempfile

    from PIL import Image

    from dcforget import shapes

    chosen = list(names) or list(shapes.CONCEPTS)
    for n in chosen:
        if n not in shapes.CONCEPTS:
            raise ConceptError(f"unknown concept {n!r}; shapes has: {', '.join(shapes.CONCEPTS)}")
    dest = Path(out)
    if dest.exists() and not force:
        raise ConfigError(f"{dest} already exists; pass --force to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for n in chosen:
            sets = shapes.concept_examples(n, per_concept, size=size, seed=seed or 0)
            for part, images in zip(("pos", "neg"), sets):
                (tmp / n / part).mkdir(parents=True)
                for i, img in enumerate(images):
                    Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp / n / part / f"{i:04d}.png")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    click.echo(f"wrote {len(chosen)} concept folders of {per_concept} + {per_concept} images (pos, neg) to {dest}")
