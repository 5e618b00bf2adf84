import pytest
import torch

from attacks.inversion import invert_classes, score_reconstructions, total_variation
from dcforget.train import TrainConfig, as_unit, train_on

CPU = torch.device("cpu")


def test_inverted_images_are_recognised_as_their_class(tiny):
    model = train_on(tiny, "cnn", TrainConfig(epochs=3, batch_size=32), seed=0, device=CPU, quiet=True).model
    recon, targets = invert_classes(model, 4, (3, 16, 16), per_class=2, steps=40, seed=0)
    assert recon.shape == (8, 3, 16, 16) and float(recon.min()) >= 0 and float(recon.max()) <= 1
    with torch.no_grad():
        assert (model(recon).argmax(1) == targets).float().mean() == 1.0
    again, _ = invert_classes(model, 4, (3, 16, 16), per_class=2, steps=40, seed=0)
    assert torch.equal(recon, again)
    # a reconstruction that IS a forget image scores SSIM 1 and cosine 1
    imgs, labels = tiny.train.images[:8], tiny.train.labels[:8]
    s = score_reconstructions(as_unit(imgs), labels, imgs, labels, evaluator=model)
    assert s["ssim"] == pytest.approx(1.0, abs=1e-4) and s["feature_cosine"] == pytest.approx(1.0, abs=1e-4)
    assert s["evaluator_accuracy"] == 1.0  # the training images themselves: the evaluator knows their classes
    noise = score_reconstructions(
        torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)), labels, imgs, labels, evaluator=model
    )
    # noise resembles no forget image and is not recognised as the class it stands for (labels [2,2,3,3,0,2,3,0]:
    # whatever class the model calls noise, at most 3 of 8 are right)
    assert noise["ssim"] < 0.5 and noise["feature_cosine"] < 0.95 and noise["evaluator_accuracy"] <= 0.5


def test_total_variation():
    assert float(total_variation(torch.ones(1, 3, 4, 4))) == 0.0
    checker = (torch.arange(16).view(4, 4) % 2).float().expand(1, 1, 4, 4)
    assert float(total_variation(checker)) > 0.4
