"""Fisher forgetting against plain transcriptions of its definition (Golatkar / Unlearn-Sparse ``fisher_new``):
per-sample Fisher over all classes, then var = 1/(F+1e-8) clamped (1e3; 1e2 for class rows), times alpha,
averaged over dim 1, x10 for class-row and 1-D parameters; theta = theta0 + sqrt(var) * N(0, 1)."""

import pytest
import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.models import create_model
from dcforget.runtime import seeded
from dcforget.train import as_unit
from unlearn.methods.base import UnlearnContext
from unlearn.methods.fisher import fisher, fisher_diagonal
from unlearn.request import cumulative_split

CPU = torch.device("cpu")
ARCHS = {"mlp": {"hidden": (16, 8)}, "cnn": {"channels": (5, 6, 7, 8), "hidden": 12}}


def _model(arch, info, seed=0):
    torch.manual_seed(seed)
    m = create_model(arch, info, **ARCHS[arch])
    for mod in m.modules():  # non-trivial running statistics, so eval vs train mode would show
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m.train()  # the Fisher must switch to eval mode itself


def _loop_fisher(model, images):
    """Batch size 1, one autograd call per (sample, class): the definition, written out."""
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p) for n, p in params}
    for x in as_unit(images):
        out = model(x[None])
        prob = F.softmax(out, 1)[0].detach()
        for y in range(out.shape[1]):
            loss = F.cross_entropy(out, torch.tensor([y]))
            grads = torch.autograd.grad(loss, [p for _, p in params], retain_graph=True)
            for (n, _), g in zip(params, grads):
                acc[n] += prob[y] * g ** 2
    return {n: v / len(images) for n, v in acc.items()}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_vectorised_fisher_equals_the_batch_one_loop(tiny, arch):
    model = _model(arch, tiny.info)
    images = tiny.train.images[:19]
    got = fisher_diagonal(model, images, batch_size=7)  # 7 does not divide 19: chunks of 7, 7, 5
    assert model.training  # mode restored
    want = _loop_fisher(model, images)
    assert got.keys() == want.keys() and len(got) > 4
    for n in want:
        assert got[n].shape == want[n].shape
        scale = float(want[n].abs().max())
        assert scale > 0, n
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-5 * scale)
    # chunking does not change the result
    one = fisher_diagonal(model, images, batch_size=19)
    for n in want:
        torch.testing.assert_close(got[n], one[n], rtol=1e-5, atol=1e-6 * float(one[n].abs().max()))


def _context(tiny, arch, alpha, seed):
    split = cumulative_split(tiny, "class:1", 0, None)
    model = _model(arch, tiny.info).eval()
    return UnlearnContext(model, tiny, split, CPU, seed, {"alpha": alpha, "batch_size": 16}, quiet=True), split


def _transcribed_var(p, fish, k, alpha):
    var = 1.0 / (fish + 1e-8)
    var = torch.clamp(var, max=1e3)
    if p.shape[0] == k:
        var = torch.clamp(var, max=1e2)
    var = alpha * var
    if p.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
    if p.shape[0] == k:
        var *= 10
    elif p.ndim == 1:
        var *= 10
    return var


@pytest.mark.parametrize("arch", list(ARCHS))
def test_method_follows_the_variance_rule_with_the_same_seed(tiny, arch):
    alpha, seed, k = 0.2, 5, tiny.info.num_classes
    ctx, split = _context(tiny, arch, alpha, seed)
    theta0 = {n: p.detach().clone() for n, p in ctx.original.named_parameters()}
    out = fisher(ctx)
    for n, p in ctx.original.named_parameters():  # the original is untouched
        assert torch.equal(p, theta0[n])
    fish = _loop_fisher(ctx.copy_original(), tiny.train.images[split.retain])
    raw = {n: 1.0 / (f + 1e-8) for n, f in fish.items()}
    assert any(bool((r > 1e3).any()) for r in raw.values())  # the 1e3 clamp is exercised
    rows = [n for n, p in theta0.items() if p.shape[0] == k]
    assert len(rows) == 2 and any(bool((raw[n] > 1e2).any()) for n in rows)  # so is the class-row 1e2 clamp
    with seeded(seed, CPU):
        want = {n: p0 + _transcribed_var(p0, fish[n], k, alpha).sqrt() * torch.randn_like(p0)
                for n, p0 in theta0.items()}
    got = dict(out.named_parameters())
    for n in want:
        torch.testing.assert_close(got[n].detach(), want[n], rtol=1e-4, atol=1e-5, msg=n)
    # the noise of a weight matrix has one standard deviation per output row (mean over dim 1)
    w = next(n for n, p in theta0.items() if p.ndim == 2 and p.shape[0] != k)
    with seeded(seed, CPU):
        z = {n: torch.randn_like(p0) for n, p0 in theta0.items()}[w]
    std = (got[w].detach() - theta0[w]) / z
    torch.testing.assert_close(std, std[:, :1].expand_as(std), rtol=1e-3, atol=1e-9)


def test_alpha_scales_the_clamped_variance_not_the_raw_one(tiny):
    """A dead hidden unit has zero Fisher: its weights get var = alpha * 1e3 (clamp first), std 0.01 at alpha
    1e-7. Applying alpha first (alpha / 1e-8 = 10, under the 1e3 clamp) gives std 3.2 and wrecks the model."""
    alpha = 1e-7
    ctx, _ = _context(tiny, "mlp", alpha, seed=1)
    first = ctx.original.beginning[2]  # Linear(768, 16)
    with torch.no_grad():
        first.weight[3].zero_()
        first.bias[3] = -1.0  # unit 3 never fires: zero gradient for its incoming weights and for its bias
    theta0 = {n: p.detach().clone() for n, p in ctx.original.named_parameters()}
    out = fisher(ctx)
    delta = out.beginning[2].weight.detach()[3] - theta0["beginning.2.weight"][3]
    assert 0.007 < float(delta.std()) < 0.013  # sqrt(1e-7 * 1e3) = 0.01
    bias_delta = float(out.beginning[2].bias.detach()[3] - theta0["beginning.2.bias"][3])
    assert abs(bias_delta) < 0.032 * 6  # 1-D: var = 10 * alpha * 1e3 at most
    # no parameter moves by more than sqrt(10 * alpha * 1e3) times a few standard normals
    worst = max(float((p.detach() - theta0[n]).abs().max()) for n, p in out.named_parameters())
    assert worst < 0.032 * 6.5


def test_bad_options_raise_typed_errors(tiny):
    model = _model("mlp", tiny.info)
    with pytest.raises(ConfigError):
        fisher_diagonal(model, tiny.train.images[:4], batch_size=0)
    ctx, _ = _context(tiny, "mlp", "lots", seed=0)
    with pytest.raises(ConfigError):
        fisher(ctx)


def test_the_fisher_is_computed_once_per_original_and_retain_set(tiny, monkeypatch):
    """A search over alpha reads the Fisher back; another original (or retain set) computes its own."""
    import unlearn.methods.fisher as mod

    calls = []
    real = mod.fisher_diagonal
    monkeypatch.setattr(mod, "fisher_diagonal", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(mod, "_CACHE", type(mod._CACHE)())
    ctx, _ = _context(tiny, "mlp", 0.2, seed=3)
    first = fisher(ctx)
    ctx2, _ = _context(tiny, "mlp", 0.5, seed=3)  # same original, same retain set, another alpha
    second = fisher(ctx2)
    assert len(calls) == 1
    assert ctx.extra["fisher_reused"] is False and ctx2.extra["fisher_reused"] is True
    ctx3, _ = _context(tiny, "mlp", 0.2, seed=3)  # the first request again: the same model
    for a, b in zip(first.parameters(), fisher(ctx3).parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    with torch.no_grad():  # another original
        next(ctx3.original.parameters()).add_(0.01)
    fisher(ctx3)
    assert len(calls) == 2
