import hashlib

import h5py
import pytest
import torch
from click.testing import CliRunner

import attacks.ulira as ulira_mod
from attacks.cli import main as attacks_main
from attacks.ulira import SCHEMA, SignalsFileError, attack, plan_shadow, run_shadows, shadow_seed
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.train import TrainConfig

CPU = torch.device("cpu")
# few images, heavy noise and enough epochs: the MLP memorises its training images
SPEC = "synthetic:classes=2,train=40,test=10,size=8,noise=1.2"
CFG = TrainConfig(epochs=40, batch_size=20, lr=3e-3)


def test_shadow_plans_are_seeded_halves():
    a, b = plan_shadow(100, 3, 0.2, seed=0), plan_shadow(100, 3, 0.2, seed=0)
    assert torch.equal(a.in_train, b.in_train) and int(a.in_train.sum()) == 50 and int(a.in_forget.sum()) == 10
    assert not (a.in_forget & ~a.in_train).any()
    assert not torch.equal(a.in_train, plan_shadow(100, 4, 0.2, seed=0).in_train)


@pytest.fixture(scope="module")
def data():
    return load_data(SPEC, val_fraction=0.0)  # as `attacks ulira` loads it: shadows use no validation split


def test_separates_memorised_from_never_seen_and_not_retraining(data, tmp_path):
    memorised = tmp_path / "none.h5"
    info = run_shadows(data, "mlp", CFG, {"none": {}, "retrain": {"epochs": 40, "batch_size": 20, "lr": 3e-3}},
                       shadows=8, signals=memorised, device=CPU, forget_fraction=0.5, quiet=True)
    assert info["trained"] == 8 and info["seconds_per_shadow"] > 0
    res = attack(memorised)  # the first method: "none", i.e. the original. It still remembers
    assert res["variant"] == "none" and res["shadows"] == 8 and res["auc"] > 0.75
    assert attack(memorised, "original")["auc"] == res["auc"]  # the same models, the same scores
    assert abs(attack(memorised, "retrain")["auc"] - 0.5) < 0.15  # retraining is retraining
    assert abs(attack(memorised, "retrained")["auc"] - 0.5) < 0.15
    assert len(res["per_example"]["index"]) == res["examples"]
    with pytest.raises(ConfigError, match="holds no 'finetune'"):
        attack(memorised, "finetune")


def test_resumable_and_refuses_another_setup(data, tmp_path):
    sig = tmp_path / "s.h5"
    run_shadows(data, "mlp", TrainConfig(epochs=1), {"none": {}}, shadows=2, signals=sig, device=CPU, quiet=True)
    with h5py.File(sig, "a") as f:  # an interrupted shadow: not marked complete
        f["shadows/1"].attrs["complete"] = False
        before = f["shadows/0/conf"][()]
    again = run_shadows(data, "mlp", TrainConfig(epochs=1), {"none": {}}, shadows=3, signals=sig, device=CPU, quiet=True)
    assert again["trained"] == 2  # shadow 1 redone, shadow 2 new, shadow 0 kept
    with h5py.File(sig) as f:
        assert (f["shadows/0/conf"][()] == before).all() and f["shadows/0/conf"].chunks == (1, 80)
    with pytest.raises(ConfigError, match="another setup"):
        run_shadows(data, "cnn", TrainConfig(epochs=1), {"none": {}}, shadows=1, signals=sig, device=CPU, quiet=True)


def test_models_under_attack_are_independent_of_every_shadow(data, tmp_path, monkeypatch):
    """The 'retrained' variant is a second retrain with its own seed, never a shadow's reference model; the
    unlearning methods (here "retrain", which with a shared seed would reproduce the reference bit for bit) too."""
    calls = []
    real = ulira_mod.train_on

    def spy(data_, arch, cfg, *, seed, index, **kw):
        out = real(data_, arch, cfg, seed=seed, index=index, **kw)
        calls.append((seed, index.clone(), out.model))
        return out

    monkeypatch.setattr(ulira_mod, "train_on", spy)
    sig = tmp_path / "s.h5"
    cfg = TrainConfig(epochs=2, batch_size=20)
    run_shadows(data, "mlp", cfg, {"retrain": {"epochs": 2, "batch_size": 20}}, shadows=3, signals=sig, device=CPU,
                seed=0, forget_fraction=0.5, quiet=True)
    assert len(calls) == 9  # per shadow: original, reference retrained, retrained under test
    shadow_seeds = {shadow_seed(0, i) for i in range(3)}
    for i in range(3):
        (s_orig, _, _), (s_ref, i_ref, ref), (s_test, i_test, test) = calls[3 * i: 3 * i + 3]
        assert s_orig == s_ref == shadow_seed(0, i) and s_test not in shadow_seeds
        assert torch.equal(i_ref, i_test)  # the same retain set ...
        assert any(not torch.equal(a, b) for a, b in zip(ref.parameters(), test.parameters()))  # ... another model
    with h5py.File(sig) as f:
        assert f.attrs["schema"] == SCHEMA
        for i in range(3):
            g = f[f"shadows/{i}"]
            conf, reference = g["conf"][()], g["reference"][()]
            assert g.attrs["seed"] == shadow_seed(0, i) and int(g.attrs["test_seed"]) not in shadow_seeds
            assert not (conf[1] == reference).all() and not (conf[2] == reference).all()  # retrained, retrain method
    res = attack(sig, "retrained")
    assert res["seeds"]["under_test"] == [int(calls[3 * i + 2][0]) for i in range(3)]
    assert res["auc"] != 0.5  # the scores now come from two different models (AUC exactly 0.5 before)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _condensed_h5(path):
    from dcforget.condensed_store import CondensedSet, write_condensed

    cs = CondensedSet(images=torch.rand(2, 3, 8, 8), labels=torch.tensor([0, 1]), bucket_indptr=torch.tensor([0, 1, 2]),
                      bucket_indices=torch.tensor([0, 1]), source_indices=torch.tensor([-1, -1]), method="fdm",
                      dataset="synthetic", num_classes=2, norm_mean=(0.5,) * 3, norm_std=(0.25,) * 3, train_size=2,
                      train_fingerprint="ab" * 32, config={})
    return write_condensed(path, cs)


def _foreign_h5(path):
    with h5py.File(path, "w") as f:  # looks like signals (shadows/0, incomplete) but carries no schema
        f.create_group("shadows/0").create_dataset("conf", data=[[1.0]])
        f.attrs["arch"] = "mlp"
    return path


@pytest.mark.parametrize("make", [_condensed_h5, _foreign_h5])
def test_cli_refuses_a_foreign_hdf5_as_signals_and_leaves_it_alone(tmp_path, make):
    path = make(tmp_path / "x.h5")
    before, listing = _sha(path), sorted(p.name for p in tmp_path.iterdir())
    res = CliRunner().invoke(attacks_main, ["ulira", SPEC, "--model", "mlp", "--epochs", "1", "--shadows", "3",
                                            "--method", "none", "--signals", str(path)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "not a U-LiRA signals file" in lines[0]
    assert _sha(path) == before and sorted(p.name for p in tmp_path.iterdir()) == listing
    with pytest.raises(SignalsFileError):  # the library refuses too, and so does the attack
        run_shadows(load_data(SPEC, val_fraction=0.0), "mlp", TrainConfig(epochs=1), {"none": {}}, shadows=1,
                    signals=path, device=CPU, quiet=True)
    with pytest.raises(SignalsFileError):
        attack(path)
    assert _sha(path) == before


def test_cli_refuses_a_non_hdf5_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not hdf5\n")
    res = CliRunner().invoke(attacks_main, ["ulira", SPEC, "--model", "mlp", "--epochs", "1", "--shadows", "3",
                                            "--method", "none", "--signals", str(path)])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "not an HDF5 file" in lines[0]
    assert path.read_text() == "not hdf5\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_crash_while_adding_a_shadow_leaves_the_previous_file(data, tmp_path, monkeypatch):
    sig = tmp_path / "s.h5"
    cfg = TrainConfig(epochs=1)
    run_shadows(data, "mlp", cfg, {"none": {}}, shadows=1, signals=sig, device=CPU, quiet=True)
    before = _sha(sig)
    real = ulira_mod.shutil.copyfile

    def copy_then_die(src, dst):
        real(src, dst)
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(ulira_mod.shutil, "copyfile", copy_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        run_shadows(data, "mlp", cfg, {"none": {}}, shadows=2, signals=sig, device=CPU, quiet=True)
    assert _sha(sig) == before and [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temp file left behind
