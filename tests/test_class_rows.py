"""A whole-class request to the default method starts from the original with the forgotten classes' output rows
dropped (``drop_rows``): the masked distillation's own fixed point, so training moves the model only where the
retain data asks. Per-sample requests never drop a row."""

import pytest
import torch

from dcforget.errors import ConfigError
from dcforget.train import as_unit
from unlearn.request import unlearn_request

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(memorised_mlp):
    return memorised_mlp  # tests/conftest.py


def _run(setup, forget, **options):
    data, mlp, cs = setup
    return unlearn_request(
        mlp, data, forget, "condensed", device=CPU, seed=0, options=options, condensed=cs, quiet=True
    )


def test_a_whole_class_request_starts_from_the_original_without_the_class_rows(setup):
    data, mlp, _ = setup
    res = _run(setup, "class:1", steps=1, lr=1e-9)  # one step that cannot move: the start itself
    dropped = res.report["method_extra"]["rows_dropped"]
    assert dropped["classes"] == [1]
    out = [m for m in res.model.final.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert out.weight[1].abs().max() < 1e-6 and out.bias[1].item() == pytest.approx(dropped["bias"], abs=1e-6)
    with torch.no_grad():
        x = as_unit(data.train.images)
        before, after = mlp.eval()(x), res.model(x)
    masked = before.clone()
    masked[:, 1] = float("-inf")
    assert (after.argmax(1) == masked.argmax(1)).float().mean() > 0.99  # the masked teacher's answers
    assert (after.argmax(1) != 1).all() and res.report["forget_acc"] == 0.0
    off = _run(setup, "class:1", steps=1, lr=1e-9, drop_rows=False)  # the earlier start: the class still answers
    assert "rows_dropped" not in off.report["method_extra"] and off.report["forget_acc"] > 0.5


def test_a_per_sample_request_drops_no_row_and_a_bad_value_is_refused(setup, tmp_path):
    (tmp_path / "f.txt").write_text("3\n70\n")
    res = _run(setup, f"indices:{tmp_path / 'f.txt'}")
    assert "rows_dropped" not in res.report["method_extra"]
    with pytest.raises(ConfigError, match="drop_rows must be true or false"):
        _run(setup, "class:1", drop_rows="yes")


def test_whole_epochs_zero_is_the_dropped_rows_alone(setup):
    data, mlp, _ = setup
    res = _run(setup, "class:1")  # the registered default: whole_epochs=0
    extra = res.report["method_extra"]
    assert extra["steps"] == 0 and extra["rows_dropped"]["classes"] == [1]
    with torch.no_grad():
        x = as_unit(data.train.images)
        masked = mlp.eval()(x)
        masked[:, 1] = float("-inf")
        assert torch.equal(res.model(x).argmax(1), masked.argmax(1))
    for k, v in mlp.state_dict().items():  # nothing but the output layer's class row moved
        moved = (res.model.state_dict()[k] != v).nonzero()
        assert moved.numel() == 0 or k.startswith("final.head") and set(moved[:, 0].tolist()) == {1}, k
    with pytest.raises(ConfigError, match="needs drop_rows=true"):  # nothing would train the class away
        _run(setup, "class:1", drop_rows=False)
    assert "rows_dropped" not in _run(setup, "class:1", drop_rows=False, whole_epochs=2).report["method_extra"]
