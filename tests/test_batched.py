"""Batched training of many small models equals training them one by one."""

import pytest
import torch

from dcforget.batched import fit_many, stack_models
from dcforget.errors import ConfigError
from dcforget.train import TrainConfig, evaluate, train_on


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fit_many_equals_one_by_one(tiny, optimizer):
    n = len(tiny.train)
    g = torch.Generator().manual_seed(0)
    subsets = torch.stack([torch.randperm(n, generator=g)[:70] for _ in range(3)])
    seeds = [5, 11, 17]
    cfg = TrainConfig(
        epochs=3,
        batch_size=16,
        optimizer=optimizer,
        lr=0.01 if optimizer == "sgd" else 1e-3,
        schedule="cosine",
        weight_decay=1e-4,
    )
    stack = fit_many("mlp", tiny, subsets, seeds, cfg, device=torch.device("cpu"))
    assert len(stack) == 3
    batched_logits = stack.logits(tiny.test.images)
    for m, seed in enumerate(seeds):
        alone = train_on(tiny, "mlp", cfg, seed=seed, device=torch.device("cpu"), index=subsets[m], quiet=True).model
        mine = stack.state_dict(m)
        assert mine.keys() == alone.state_dict().keys()
        for k, a in alone.state_dict().items():
            torch.testing.assert_close(mine[k], a, rtol=1e-3, atol=1e-4, msg=k)  # Adam: rounding in near-zero moments
        with torch.no_grad():
            want = alone.eval()(tiny.test.images.float() / 255)
        torch.testing.assert_close(batched_logits[m], want, rtol=1e-4, atol=1e-4)
    # the models differ from one another (own data, own seed) and did learn
    assert not torch.allclose(batched_logits[0], batched_logits[1])
    accs = [evaluate(stack.model(m), tiny.train.images, tiny.train.labels).accuracy for m in range(3)]
    assert min(accs) > 0.5


def test_fit_many_continues_from_a_stack(tiny):
    cfg = TrainConfig(epochs=1, batch_size=16)
    sub = torch.arange(40).repeat(2, 1)
    first = fit_many("mlp", tiny, sub, [0, 1], cfg, device=torch.device("cpu"))
    more = fit_many("mlp", tiny, sub, [2, 3], cfg, device=torch.device("cpu"), start=first)
    assert not torch.equal(first.params["final.head.0.weight"], more.params["final.head.0.weight"])
    restacked = stack_models([first.model(0), first.model(1)])
    torch.testing.assert_close(restacked.params["final.head.0.weight"], first.params["final.head.0.weight"])


def test_fit_many_refuses_batch_norm_and_bad_subsets(tiny):
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ConfigError, match="running statistics"):
        fit_many("cnn", tiny, torch.arange(20).repeat(2, 1), [0, 1], cfg, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="one row per seed"):
        fit_many("mlp", tiny, torch.arange(20).repeat(3, 1), [0, 1], cfg, device=torch.device("cpu"))
