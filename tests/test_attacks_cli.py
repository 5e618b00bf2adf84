import json

import pytest
from click.testing import CliRunner

from attacks.cli import main as attacks_main
from unlearn.cli import main as unlearn_main

SPEC = "synthetic:classes=4,train=30,test=15,size=16,noise=0.5"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("attacks")
    r = CliRunner()
    assert (
        r.invoke(
            unlearn_main, ["train", SPEC, "--model", "mlp", "--epochs", "5", "--out", str(d / "o.pt"), "-q"]
        ).exit_code
        == 0
    )
    for s in range(2):
        for method, name in (("retrain", "r"), ("finetune", "u")):
            res = r.invoke(
                unlearn_main,
                [
                    "--method",
                    method,
                    "--checkpoint",
                    str(d / "o.pt"),
                    "--forget",
                    "class:1",
                    "--epochs",
                    "2",
                    "--seed",
                    str(s),
                    "--out",
                    str(d / f"{name}{s}"),
                    "-q",
                ],
            )
            assert res.exit_code == 0, res.output
    return d


def test_mia_report(models, tmp_path):
    out = tmp_path / "mia.json"
    res = CliRunner().invoke(attacks_main, ["mia", "--checkpoint", str(models / "r0" / "model.pt"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    # 30 images of the class, of which round(0.15 * 30) = 4 are in the validation split
    # the population MIA (a logistic regression on the loss) tells them apart by their higher losses, both ways
    assert rep["members"] == 26 and rep["non_members"] == 60 and rep["mia"] >= 0.75
    assert rep["forget_acc"] == 0.0 and rep["auc"] < 0.5  # the never-seen class has the lower confidences
    res = CliRunner().invoke(attacks_main, ["mia", "--checkpoint", str(models / "o.pt")])
    assert res.exit_code == 2 and "give --forget" in res.output


def test_epsilon_report(models, tmp_path):
    out = tmp_path / "eps.json"
    args = [
        "epsilon",
        "--unlearned",
        str(models / "u0" / "model.pt"),
        "--unlearned",
        str(models / "u1" / "model.pt"),
        "--retrained",
        str(models / "r0" / "model.pt"),
        "--retrained",
        str(models / "r1" / "model.pt"),
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(attacks_main, args)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert (
        len(rep["eps"]) == 26
        and 0 <= rep["F"] <= 1
        and rep["final"]
        == pytest.approx(
            rep["F"] * rep["ra_unlearned"] / rep["ra_retrained"] * rep["ta_unlearned"] / rep["ta_retrained"]
        )
    )
    res = CliRunner().invoke(
        attacks_main,
        ["epsilon", "--unlearned", str(models / "u0" / "model.pt"), "--retrained", str(models / "r0" / "model.pt")],
    )
    assert res.exit_code == 2 and "at least 2" in res.output


def test_invert_writes_grids_and_scores(models, tmp_path):
    out = tmp_path / "inv"
    res = CliRunner().invoke(
        attacks_main,
        [
            "invert",
            "--checkpoint",
            str(models / "o.pt"),
            "--checkpoint",
            str(models / "r0" / "model.pt"),
            "--forget",
            "class:1",
            "--evaluator",
            str(models / "o.pt"),
            "--steps",
            "20",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["models"]) == {"o", "r0"} and rep["classes"] == [1]
    assert (out / "o.png").read_bytes()[:4] == b"\x89PNG"
    # the original still knows class 1, the retrained model never saw it
    assert rep["models"]["o"]["evaluator_accuracy"] >= rep["models"]["r0"]["evaluator_accuracy"]
    res = CliRunner().invoke(
        attacks_main,
        ["invert", "--checkpoint", str(models / "o.pt"), "--forget", "class:1", "--steps", "5", "--out", str(out)],
    )
    assert res.exit_code == 2 and "already exists" in res.output


def test_mia_svc_variants(models, tmp_path):
    out = tmp_path / "mia.json"
    res = CliRunner().invoke(
        attacks_main, ["mia", "--checkpoint", str(models / "r0" / "model.pt"), "--svc", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    eff = rep["svc_mia"]["efficacy"]
    assert set(eff) == {"correctness", "confidence", "entropy", "m_entropy", "prob"}
    # the retrained model never saw class 1: every attack calls the whole forget set a non-member
    assert all(v == 1.0 for v in eff.values()) and rep["entropy_lr_forget_member_rate"] == 0.0
    # the original trained on it: the per-sample attacks call (nearly) all of it a member. (The probability-vector
    # attack is label-blind and class 1 is only among its non-members, so it cannot tell; not asserted.)
    out = tmp_path / "mia-original.json"
    res = CliRunner().invoke(
        attacks_main, ["mia", "--checkpoint", str(models / "o.pt"), "--forget", "class:1", "--svc", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    orig = json.loads(out.read_text())
    assert all(orig["svc_mia"]["efficacy"][k] <= 0.2 for k in ("correctness", "confidence", "entropy", "m_entropy"))
    assert orig["entropy_lr_forget_member_rate"] >= 0.8 and orig["auc"] >= 0.9 > 0.2 >= rep["auc"]


def test_invert_condensive_writes_grids_and_scores(models, tmp_path):
    out = tmp_path / "cinv"
    res = CliRunner().invoke(
        attacks_main,
        [
            "invert",
            "--method",
            "condensive",
            "--checkpoint",
            str(models / "o.pt"),
            "--checkpoint",
            str(models / "r0" / "model.pt"),
            "--forget",
            "class:1",
            "--images-per-class",
            "3",
            "--steps",
            "3",
            "--evaluator",
            str(models / "o.pt"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == "condensive" and rep["pool"] == "test"
    o, r0 = rep["models"]["o"], rep["models"]["r0"]
    assert o["reconstructions"] == r0["reconstructions"] == o["scored"] == 3
    # the evaluator recognises the class of the original's reconstructions, and through the model that learnt
    # class 1 they resemble the forget images (SSIM ~0.2) more than those through the model that never saw it (~0.08)
    assert (
        o["evaluator_accuracy"] >= 2 / 3 and o["ssim"] > 1.5 * r0["ssim"] and o["feature_cosine"] > r0["feature_cosine"]
    )
    assert (out / "o.png").read_bytes()[:4] == b"\x89PNG"


def test_defend_reports_original_mu_and_dp(models, tmp_path):
    pytest.importorskip("opacus")
    out = tmp_path / "defend"
    args = [
        "defend",
        "--checkpoint",
        str(models / "o.pt"),
        "--method",
        "finetune",
        "--option",
        "epochs=2",
        "--dp-epochs",
        "2",
        "--dp-batch-size",
        "16",
        "--dp-epsilon",
        "8",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(attacks_main, args)
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["models"]) == {"original", "mu-regularised", "dp-sgd"} and rep["overfit_size"] > 0
    dp = rep["models"]["dp-sgd"]
    assert dp["epsilon_spent"] == pytest.approx(8, rel=0.05) and dp["noise_multiplier"] > 0
    from dcforget.checkpoint import read_checkpoint_meta

    meta, _ = read_checkpoint_meta(out / "mu-regularised.pt")
    assert len(meta.forgotten) == rep["overfit_size"] and meta.requests[-1] == "overfit"
    again = CliRunner().invoke(attacks_main, args)  # never overwrites without --force
    assert again.exit_code == 2 and "exists" in again.output
    res = CliRunner().invoke(
        attacks_main, ["defend", "--checkpoint", str(models / "o.pt"), "--out", str(tmp_path / "x")]
    )
    assert res.exit_code == 2 and "--from-condensed" in res.output
