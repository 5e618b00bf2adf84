import pytest
import torch

from dcforget.errors import ConfigError, UnknownNameError
from dcforget.models import MODELS, create_model, model_from_config

ARCHS = ["mlp", "cnn", "convnet", "resnet18", "vgg16"]


def test_registry_has_the_contract_models():
    assert set(ARCHS) <= set(MODELS.names())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape, classes", [((3, 32, 32), 10), ((1, 28, 28), 7), ((3, 12, 12), 3)])
def test_shapes_split_and_features(arch, shape, classes):
    torch.manual_seed(0)
    m = create_model(arch, image_shape=shape, num_classes=classes).eval()
    x = torch.rand(2, *shape)
    logits = m(x)
    assert logits.shape == (2, classes)
    beginning, intermediate, final = m.split()
    assert torch.allclose(final(intermediate(beginning(x))), logits, atol=1e-5)
    feats = m.features(x)
    assert feats.shape == (2, m.feature_dim)
    assert torch.allclose(m.final.head(feats), logits, atol=1e-5)


def test_dcu_feature_dims_on_cifar():
    dims = {a: create_model(a, image_shape=(3, 32, 32), num_classes=10).feature_dim for a in ARCHS}
    assert dims == {"mlp": 128, "cnn": 1024, "convnet": 2048, "resnet18": 512, "vgg16": 512}


def test_convnet3_parameter_count_matches_the_literature():
    m = create_model("convnet", image_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in m.parameters()) == 320_010


def test_normalisation_is_the_first_layer():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.1, 0.25)
    m = create_model("mlp", image_shape=(3, 4, 4), num_classes=2, mean=mean, std=std)
    x = torch.rand(1, 3, 4, 4)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(m.beginning[0](x), expected)


def test_mlp_logit_relu_switch_reproduces_the_reference_bug():
    torch.manual_seed(0)
    faithful = create_model("mlp", image_shape=(3, 8, 8), num_classes=10, logit_relu=True)
    assert (faithful(torch.rand(16, 3, 8, 8)) >= 0).all()
    torch.manual_seed(0)
    fixed = create_model("mlp", image_shape=(3, 8, 8), num_classes=10)
    assert (fixed(torch.rand(16, 3, 8, 8)) < 0).any()


def test_rebuild_from_config_gives_same_architecture():
    m = create_model("convnet", image_shape=(1, 28, 28), num_classes=5, width=16)
    m2 = model_from_config(m.config)
    m2.load_state_dict(m.state_dict())
    assert m2.config == m.config


def test_bad_model_requests():
    with pytest.raises(UnknownNameError, match="choose one of"):
        create_model("transformer", image_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(ConfigError, match="bad options"):
        create_model("cnn", image_shape=(3, 32, 32), num_classes=10, depth=9)
