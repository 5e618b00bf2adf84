import pytest
import torch

from attacks.roc import auc, roc_curve, tpr_at_fpr
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget
from dcforget.overfit import otsu_threshold, overfitting_scores
from dcforget.train import TrainConfig, train_on


def test_otsu_finds_the_valley_of_a_bimodal_histogram():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(3000, generator=g) * 0.5 + 1.0, torch.randn(2000, generator=g) * 0.5 + 5.0])
    t = otsu_threshold(x)
    assert 2.3 < t < 3.7  # the valley between modes at 1 and 5
    with pytest.raises(ValueError):
        otsu_threshold(torch.ones(10))


def test_roc_auc_closed_forms():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(5000, generator=g), torch.rand(5000, generator=g)
    assert auc(a, b) == pytest.approx(0.5, abs=0.02)
    assert auc(a + 2, b) == 1.0 and auc(a, b + 2) == 0.0
    # N(1,1) vs N(0,1): AUC = Phi(1/sqrt(2)) = 0.7602
    m, n = torch.randn(40000, generator=g) + 1, torch.randn(40000, generator=g)
    assert auc(m, n) == pytest.approx(0.7602, abs=0.01)
    fpr, tpr = roc_curve(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert tpr_at_fpr(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]), 0.0) == 0.5


def test_overfitting_scores_match_a_batch_of_one_loop(tiny):
    model = train_on(tiny, "mlp", TrainConfig(epochs=2), seed=0, device=torch.device("cpu"), quiet=True).model.eval()
    x, y = tiny.train.images[:6], tiny.train.labels[:6]
    fast = overfitting_scores(model, x, y, chunk=4)
    n = sum(p.numel() for p in model.parameters())
    for i in range(6):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 1].float() / 255), y[i : i + 1])
        loss.backward()
        sq = sum(float((p.grad**2).sum()) for p in model.parameters()) / n
        assert float(fast[i]) == pytest.approx(abs(float(loss.detach()) - sq), rel=1e-4, abs=1e-7)


def test_overfit_spec_selects_low_score_samples(tiny):
    model = train_on(tiny, "mlp", TrainConfig(epochs=3), seed=0, device=torch.device("cpu"), quiet=True).model.eval()
    ctx = ForgetContext(tiny.train.labels, 4, 0, extra={"model": model, "images": tiny.train.images})
    split = resolve_forget(ForgetSpec.parse("overfit"), ctx)
    scores = overfitting_scores(model, tiny.train.images, tiny.train.labels)
    t = otsu_threshold(scores)
    assert torch.equal(split.forget, torch.nonzero(scores <= t).flatten())
    assert 0 < len(split.forget) < len(tiny.train)
    from dcforget.errors import ForgetSpecError

    with pytest.raises(ForgetSpecError, match="needs the model"):
        resolve_forget(ForgetSpec.parse("overfit"), ForgetContext(tiny.train.labels, 4, 0))


def test_unlearning_metric_layer_distance_and_direction(tiny):
    from attacks.unlearning_metric import layer_distance, unlearning_metric

    a = torch.randn(4, 3)
    assert layer_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert layer_distance(a, -a) == pytest.approx(2.0, abs=1e-6)
    model = train_on(tiny, "mlp", TrainConfig(epochs=3), seed=0, device=torch.device("cpu"), quiet=True).model
    labels = tiny.train.labels
    split = resolve_forget(ForgetSpec.parse("random:0.3"), ForgetContext(labels, 4, 0))
    res = unlearning_metric(model, tiny.train.images, labels, split.forget, split.retain)
    assert set(res["per_class"]) == set(labels[split.forget].tolist()) and 0 <= res["unlearning_metric"] <= 200
    # forget == retain samples pull identically: distance 0
    same = unlearning_metric(model, tiny.train.images, labels, split.retain, split.retain)
    assert same["unlearning_metric"] == pytest.approx(0.0, abs=1e-3)
