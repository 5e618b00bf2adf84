"""DP-SGD baseline and the privacy report of `attacks defend`."""
import pytest
import torch

from attacks.defend import privacy_report, train_dp
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.train import TrainConfig, train_on

CPU = torch.device("cpu")
SPEC = "synthetic:classes=2,train=40,test=40,size=8,noise=1.2"


@pytest.fixture(scope="module")
def data_and_model():
    data = load_data(SPEC)
    return data, train_on(data, "mlp", TrainConfig(epochs=60, batch_size=20, lr=3e-3), seed=0, device=CPU, quiet=True).model


def test_privacy_report_sees_a_memorising_model(data_and_model):
    data, model = data_and_model
    rep = privacy_report(model, data, torch.arange(10), CPU)
    assert rep["train_acc"] > rep["test_acc"]  # noisy data, many epochs: it memorised
    assert rep["train_auc"] > 0.6 and 0 <= rep["overfit_mia"] <= 1 and rep["overfit_acc"] is not None


def test_dp_accountant_spends_what_it_was_given_and_more_privacy_means_more_noise(data_and_model):
    pytest.importorskip("opacus")
    data, model = data_and_model
    common = dict(epochs=2, lr=1e-3, batch_size=8, delta=1e-5, max_grad_norm=1.0, device=CPU)
    _, tight = train_dp(data, model, target_epsilon=1.0, **common)
    net, loose = train_dp(data, model, target_epsilon=20.0, **common)
    assert tight["epsilon_spent"] == pytest.approx(1.0, rel=0.05) and loose["epsilon_spent"] == pytest.approx(20.0, rel=0.05)
    assert tight["noise_multiplier"] > loose["noise_multiplier"]
    assert net(torch.rand(3, *data.info.image_shape)).shape == (3, 2)
    with pytest.raises(ConfigError, match="delta"):
        train_dp(data, model, target_epsilon=1.0, **{**common, "delta": 0.0})


def test_dp_replaces_batch_norm(data_and_model):
    pytest.importorskip("opacus")
    data = load_data("synthetic:classes=2,train=16,test=8,size=16")
    cnn = train_on(data, "cnn", TrainConfig(epochs=1), seed=0, device=CPU, quiet=True).model
    net, info = train_dp(data, cnn, target_epsilon=10.0, epochs=1, lr=1e-3, batch_size=8, delta=1e-5,
                         max_grad_norm=1.0, device=CPU)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
