import h5py
import pytest
import torch

from attacks.ulira import attack, plan_shadow, run_shadows
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
    return load_data(SPEC)


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
