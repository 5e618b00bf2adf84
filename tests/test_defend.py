"""DP-SGD baseline and the privacy report of `attacks defend`."""

import pytest
import torch

from attacks.defend import privacy_report, train_dp
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.train import TrainConfig, evaluate, train_on

CPU = torch.device("cpu")
SPEC = "synthetic:classes=2,train=40,test=40,size=8,noise=1.2"


@pytest.fixture(scope="module")
def data_and_model():
    data = load_data(SPEC)
    return data, train_on(
        data, "mlp", TrainConfig(epochs=60, batch_size=20, lr=3e-3), seed=0, device=CPU, quiet=True
    ).model


def test_privacy_report_sees_a_memorising_model(data_and_model):
    data, model = data_and_model
    losses = evaluate(model, data.train.images, data.train.labels, device=CPU).losses
    most, least = losses.argsort()[:10], losses.argsort()[-10:]  # the most / least memorised training samples
    rep = privacy_report(model, data, most, CPU)
    assert rep["train_acc"] > rep["test_acc"]  # noisy data, many epochs: it memorised
    # members (the training set) score above non-members (the test set) for the loss attack
    assert rep["train_auc"] >= 0.8
    # the overfit figures are those of the given subset: the best-memorised samples are all right and the most
    # exposed (scores are monotone in the loss, so their AUC bounds the whole set's from above, the least-memorised
    # ones' from below); a loss threshold tells them from test samples better than chance
    worst = privacy_report(model, data, least, CPU)
    assert rep["overfit_acc"] == 1.0 and rep["overfit_auc"] > worst["overfit_auc"] and rep["overfit_mia"] > 0.5
    assert rep["overfit_auc"] >= rep["train_auc"] >= worst["overfit_auc"]
    assert rep["train_auc"] == worst["train_auc"] and rep["retain_acc"] == worst["retain_acc"] == 1.0


def test_dp_accountant_spends_what_it_was_given_and_more_privacy_means_more_noise(data_and_model):
    pytest.importorskip("opacus")
    data, model = data_and_model
    common = dict(epochs=2, lr=1e-3, batch_size=8, delta=1e-5, max_grad_norm=1.0, device=CPU)
    private, tight = train_dp(data, model, target_epsilon=1.0, **common)
    net, loose = train_dp(data, model, target_epsilon=20.0, **common)
    assert tight["epsilon_spent"] == pytest.approx(1.0, rel=0.05) and loose["epsilon_spent"] == pytest.approx(
        20.0, rel=0.05
    )
    assert tight["noise_multiplier"] > loose["noise_multiplier"]
    assert net(torch.rand(3, *data.info.image_shape)).shape == (3, 2)
    # the defence works: on the same data, the loss attack that tells the memorising model's members from
    # non-members (AUC ~0.96) is at chance against the epsilon-1 model
    undefended, defended = (privacy_report(m, data, torch.arange(10), CPU)["train_auc"] for m in (model, private))
    assert defended < 0.62 and undefended - defended > 0.3
    with pytest.raises(ConfigError, match="delta"):
        train_dp(data, model, target_epsilon=1.0, **{**common, "delta": 0.0})


def test_dp_replaces_batch_norm(data_and_model):
    pytest.importorskip("opacus")
    data = load_data("synthetic:classes=2,train=16,test=8,size=16")
    cnn = train_on(data, "cnn", TrainConfig(epochs=1), seed=0, device=CPU, quiet=True).model
    net, info = train_dp(
        data, cnn, target_epsilon=10.0, epochs=1, lr=1e-3, batch_size=8, delta=1e-5, max_grad_norm=1.0, device=CPU
    )
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
