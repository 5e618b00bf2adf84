"""The parity harness's adapter and CLI edges, without the reference libraries: the library sees our model without
its normalisation layer, fed normalised images, and trains our parameters; bad input is one error line, exit 2,
nothing written."""

import dataclasses

import torch
from click.testing import CliRunner

from dcforget.models import create_model
from experiments.cli import main
from experiments.parity import Prenormalized, Triples


def test_the_library_view_is_our_model_on_normalised_images():
    torch.manual_seed(0)
    model = create_model("mlp", image_shape=(3, 8, 8), num_classes=4, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)).eval()
    u8 = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3, 0])
    ds = Triples(u8, y, model.normalize.mean, model.normalize.std)
    xn = torch.stack([ds[i][0] for i in range(5)])
    view = Prenormalized(model)
    assert torch.allclose(view(xn), model(u8.float() / 255), atol=1e-5)
    assert ds[3][1] == ds[3][2] == 3  # SUPREME's (x, clabel, label) triples
    with torch.no_grad():  # a change made through the view is a change to our model
        next(view.parameters()).add_(1.0)
    assert torch.equal(next(view.parameters()), next(model.parameters()))
    assert {n.removeprefix("model.") for n, _ in view.named_parameters()} == {n for n, _ in model.named_parameters()}


def test_parity_refuses_bad_input_before_any_work(tmp_path):
    runner = CliRunner()
    for args, what in (
        (["--seeds", "0,x"], "--seeds"),
        (["--methods", "ssd,nope"], "no parity pair"),
        (["--forget", "class:2,bogus:1"], "forget"),
        (["--seeds", "1,1"], "--seeds"),
    ):
        out = tmp_path / "out"
        res = runner.invoke(main, ["parity", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out), *args])
        assert res.exit_code == 2, (args, res.output)
        assert what in res.output and not out.exists(), (args, res.output)


def test_supremes_unsir_runs_through_the_adapter_and_trains_our_model(tiny):
    """SUPREME's own ``unsir`` (its noise, its fit_one_unlearning_cycle and evaluate) runs in one process on our
    model: our parameters move, its loader factory is restored after, and a request that is not one whole class
    is refused before any work."""
    import pytest

    from experiments.parity import PAIRS, run_reference, supreme_function, supreme_status

    ok, why = supreme_status()
    if not ok:
        pytest.skip(why)
    torch.manual_seed(0)
    info = tiny.info
    model = create_model(
        "mlp",
        image_shape=tuple(tiny.train.images.shape[1:]),
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    ).eval()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    fn = supreme_function("unsir")
    factory = fn.__globals__["create_dataloader"]
    seen = {}

    def call(fn, fabric, view, loaders, kind, **kw):
        seen["before"] = {k.removeprefix("model."): p.detach().clone() for k, p in view.named_parameters()}
        out = PAIRS["unsir"].call(fn, fabric, view, loaders, kind, **kw)
        seen["after"] = {k.removeprefix("model."): p.detach().clone() for k, p in view.named_parameters()}
        seen["retain_test"] = set(kw["context"]["retain_test"].targets)
        return out

    pair = dataclasses.replace(PAIRS["unsir"], call=call)
    m = run_reference(pair, model, tiny, "class:2", 0, torch.device("cpu"))
    assert fn.__globals__["create_dataloader"] is factory
    assert seen["retain_test"] == set(range(info.num_classes)) - {2}
    assert all(torch.equal(seen["before"][k], before[k]) for k in before)  # it started from our model
    assert any(not torch.equal(seen["after"][k], before[k]) for k in before)  # and trained it
    assert {"fa", "ra", "ta", "mia", "seconds"} <= set(m) and 0 <= m["fa"] <= 1 and m["seconds"] > 0
    # the reference worked on a copy: the original is untouched (run_reference deep-copies it)
    assert all(torch.equal(p, before[k]) for k, p in model.named_parameters())
    with pytest.raises(Exception, match="one class"):
        run_reference(PAIRS["unsir"], model, tiny, "classes:1,2", 0, torch.device("cpu"))


def test_torchunlearn_status_says_how_to_get_it(monkeypatch, tmp_path):
    import importlib.util

    import pytest

    from experiments.parity import TORCHUNLEARN_ENV, torchunlearn_status

    monkeypatch.setenv(TORCHUNLEARN_ENV, str(tmp_path / "absent"))
    ok, why = torchunlearn_status()
    assert not ok and "not a directory" in why
    monkeypatch.delenv(TORCHUNLEARN_ENV)
    if importlib.util.find_spec("torchunlearn") is not None:
        pytest.skip("a torchunlearn is installed here")
    ok, why = torchunlearn_status()
    assert not ok and "github.com/Harry24k/machine-unlearning-pytorch" in why and TORCHUNLEARN_ENV in why


def test_torchunlearns_classes_run_through_the_adapter_and_change_our_model(tiny):
    """torchunlearn's own SalUn (a trainer: mask, then MergedLoaders steps) and FisherForget (its alpha sweep) on our
    model through its RobModel: our parameters move, the original is untouched, FisherForget says which alpha it
    kept. Needs $DCFORGET_TORCHUNLEARN (an upstream checkout); skipped with that reason otherwise."""
    import pytest

    from experiments.parity import TU_FISHER_ALPHAS, TU_PAIRS, run_torchunlearn, torchunlearn_status

    ok, why = torchunlearn_status()
    if not ok:
        pytest.skip(why)
    info = tiny.info
    torch.manual_seed(0)
    model = create_model(
        "mlp",
        image_shape=tuple(tiny.train.images.shape[1:]),
        num_classes=info.num_classes,
        mean=info.mean,
        std=info.std,
    ).eval()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    for name in ("salun", "fisher"):
        pair = TU_PAIRS[name]
        seen = {}

        def call(tu, rmodel, loaders, context, pair=pair, seen=seen):
            out = pair.call(tu, rmodel, loaders, context)
            seen["after"] = {k.removeprefix("model.model."): p.detach().clone() for k, p in rmodel.named_parameters()}
            seen["classes"] = context["classes"]
            return out

        m, chosen = run_torchunlearn(
            dataclasses.replace(pair, call=call), model, tiny, "class:2", 0, torch.device("cpu"), batch_size=8
        )
        assert set(seen["after"]) == set(before), name
        assert any(not torch.equal(seen["after"][k], before[k]) for k in before), name
        assert seen["classes"] == [2]
        assert {"fa", "ra", "ta", "mia", "seconds"} <= set(m) and 0 <= m["fa"] <= 1 and m["seconds"] > 0
        if name == "fisher":
            assert chosen["alpha"] in TU_FISHER_ALPHAS and chosen["fisher_s"] > 0
    assert all(torch.equal(p, before[k]) for k, p in model.named_parameters())
