"""A condensed retain set for every method (issue #33): ``--retain reduced`` serves any method that reads a retain set
the audited reduced set, resampled by weight so that a mean over it estimates the mean over the retain set."""

import pytest
import torch
from click.testing import CliRunner

from condense.build import build_condensed
from dcforget.condensed_store import CondensedSet
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSplit
from dcforget.models import create_model
from dcforget.train import TrainConfig, as_unit, train_on
from unlearn.methods import METHODS, UnlearnContext
from unlearn.reduced import assemble_reduced
from unlearn.request import unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


def _mean_image_set(data, per_bucket: int, seed: int = 0) -> CondensedSet:
    """Buckets of ``per_bucket`` same-class training images (a random partition); each condensed image is its
    bucket's mean image, the case where a condensed image stands for its members exactly (for a linear statistic)."""
    g = torch.Generator().manual_seed(seed)
    labels = data.train.labels.cpu()
    buckets = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        buckets += [idx[i : i + per_bucket] for i in range(0, len(idx), per_bucket)]
    images = torch.stack([as_unit(data.train.images[b]).mean(0) for b in buckets])
    sizes = torch.tensor([len(b) for b in buckets])
    return CondensedSet(
        images=images,
        labels=torch.stack([labels[b[0]] for b in buckets]),
        bucket_indptr=torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)]),
        bucket_indices=torch.cat(buckets),
        source_indices=torch.full((len(buckets),), -1),
        method="mean",
        dataset="synthetic",
        num_classes=data.info.num_classes,
        norm_mean=data.info.mean,
        norm_std=data.info.std,
        train_size=len(data.train),
        train_fingerprint=data.fingerprint(),
    )


def test_the_reduced_set_estimates_the_retain_sets_mean():
    data = load_data(SPEC)
    cs = _mean_image_set(data, per_bucket=5)
    forget = torch.tensor([0, 7, 50, 93])
    keep = torch.ones(len(data.train), dtype=torch.bool)
    keep[forget] = False
    split = ForgetSplit("indices", forget, torch.nonzero(keep).flatten())
    reduced = assemble_reduced(cs, forget, len(data.train), data.fingerprint(), labels=data.train.labels)
    ctx = UnlearnContext(
        create_model("mlp", data.info), data, split, CPU, 3, {}, True, cs, reduced, retain_source="reduced"
    )
    stat = lambda x: as_unit(x).mean((1, 2, 3)).double()  # noqa: E731  a linear statistic of each image
    target = stat(data.train.images[split.retain]).mean()
    x, _, w = ctx.reduced_tensors()
    # the weights: a condensed image counts for its bucket's retain members, so the weighted mean is exact here
    assert float((stat(x) * w.double()).sum() / w.double().sum()) == pytest.approx(float(target), abs=1e-6)
    assert float(w.sum()) == pytest.approx(len(split.retain))
    # the resampled draw: unbiased, within 4 standard errors of the retain mean
    xr, yr = ctx.retain()
    s = stat(xr)
    assert len(xr) == len(x) and abs(float(s.mean() - target)) <= 4 * float(s.std()) / len(s) ** 0.5
    served = ctx.extra["retain_served"]
    assert served["source"] == "reduced" and served["stands_for"] == len(split.retain)
    assert served["condensed_share_of_draws"] > served["condensed"] / served["images"]  # each stands for several
    assert torch.equal(ctx.retain()[0], xr)  # the same draw on every call
    assert len(ctx.served_audits) == 3 and all(a["passed"] for a in ctx.served_audits)


@pytest.fixture(scope="module")
def toy():
    data = load_data(SPEC)
    model = train_on(data, "mlp", TrainConfig(epochs=3, batch_size=32), seed=0, device=CPU, quiet=True).model
    cs = build_condensed(data, "fdm", model, device=CPU, seed=0, clusters=3, options={"steps": 2}, quiet=True).condensed
    return data, model, cs


FAST = {
    "epochs": 1,
    "retain_epochs": 1,
    "max_steps": 2,
    "steps": 2,
    "iterations": 1,
    "rewind_epochs": 1,
    "noise_steps": 2,
    "noise_copies": 1,
}


@pytest.mark.parametrize("name", [n for n in METHODS.names() if METHODS.get(n).reads_retain])
def test_every_method_that_reads_a_retain_set_is_served_the_reduced_set(toy, name):
    data, model, cs = toy
    m = METHODS.get(name)
    spec = "class:1" if m.class_only else "random:0.1"
    options = {k: v for k, v in FAST.items() if k in m.defaults}
    res = unlearn_request(
        model, data, spec, name, device=CPU, condensed=cs, quiet=True, options=options, retain="reduced"
    )
    rep = res.report
    assert rep["retain_source"] == "reduced" and rep["retain_served"]["source"] == "reduced"
    assert rep["independent_audit"]["scope"] == "served" and rep["independent_audit"]["served_calls"] >= 1
    assert rep["retain_served"]["images"] == rep["reduced_set"]["reduced_size"]


@pytest.mark.parametrize("name", [n for n in METHODS.names() if not METHODS.get(n).reads_retain])
def test_a_method_that_reads_no_retain_set_refuses_the_reduced_one(toy, name):
    data, model, cs = toy
    with pytest.raises(ConfigError, match="reads no retain set"):
        unlearn_request(model, data, "class:1", name, device=CPU, condensed=cs, quiet=True, retain="reduced")


def test_full_retain_is_reported_and_reduced_needs_a_condensed_file(toy):
    data, model, _ = toy
    rep = unlearn_request(model, data, "random:0.1", "finetune", device=CPU, quiet=True, options={"epochs": 1}).report
    assert rep["retain_source"] == "full" and rep["retain_served"] == {"source": "full", "images": rep["retain_size"]}
    with pytest.raises(ConfigError, match="give --from-condensed"):
        unlearn_request(model, data, "random:0.1", "finetune", device=CPU, quiet=True, retain="reduced")
    with pytest.raises(ConfigError, match="retain must be one of"):
        unlearn_request(model, data, "random:0.1", "finetune", device=CPU, quiet=True, retain="half")


def test_cli_retain_reduced_needs_a_condensed_file_and_writes_nothing(tmp_path):
    from experiments.cli import unlearn_main

    out = tmp_path / "out"
    for args, why in [(["--method", "finetune"], "--from-condensed"), (["--method", "jit"], "reads no retain set")]:
        res = CliRunner().invoke(
            unlearn_main,
            [
                *args,
                "--retain",
                "reduced",
                "--checkpoint",
                str(tmp_path / "m.pt"),
                "--forget",
                "random:0.1",
                "--out",
                str(out),
            ],
        )
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and why in res.stderr, res.output
        assert res.stderr.count("\n") == 1 and not out.exists()


def test_unlearn_methods_lists_every_method_with_its_capabilities_and_source():
    from experiments.cli import unlearn_main

    res = CliRunner().invoke(unlearn_main, ["methods"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    named = {line.split()[0] for line in lines if line and not line.startswith(" ")}
    assert named == set(METHODS.names())
    kde = next(i for i, line in enumerate(lines) if line.startswith("kde "))
    assert "--retain reduced applies" in lines[kde] and lines[kde + 1].strip().startswith("source: ")
