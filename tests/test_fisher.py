"""Fisher forgetting against plain transcriptions of its definition (Golatkar / Unlearn-Sparse ``fisher_new``):
per-sample Fisher over all classes, then var = 1/(F+1e-8) clamped (1e3; 1e2 for class rows), times alpha,
averaged over dim 1, x10 for class-row and 1-D parameters; theta = theta0 + sqrt(var) * N(0, 1)."""

import pytest
import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.models import create_model
from dcforget.runtime import seeded
from dcforget.train import as_unit
from unlearn.methods.base import METHODS, UnlearnContext
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
                acc[n] += prob[y] * g**2
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
    split = cumulative_split(tiny, ForgetSpec.parse("class:1"), 0, None)
    model = _model(arch, tiny.info).eval()
    options = {**METHODS.get("fisher").defaults, "alpha": alpha, "batch_size": 16, "omit_label": False}
    return UnlearnContext(model, tiny, split, CPU, seed, options, quiet=True), split


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
        want = {
            n: p0 + _transcribed_var(p0, fish[n], k, alpha).sqrt() * torch.randn_like(p0) for n, p0 in theta0.items()
        }
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


# --- the fast per-sample path, the batch-mean estimator and omit_label (issue #32) ---------------------------------


@pytest.mark.parametrize("arch", list(ARCHS))
def test_torch_func_path_alone_equals_the_batch_one_loop(tiny, arch):
    """With the closed form for Linear layers off, every parameter's per-sample gradients come from vmap(jacrev)."""
    model = _model(arch, tiny.info)
    images = tiny.train.images[:11]
    got = fisher_diagonal(model, images, batch_size=4, closed_form=False)
    fast = fisher_diagonal(model, images, batch_size=4)
    want = _loop_fisher(model, images)
    for n in want:
        scale = float(want[n].abs().max())
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(fast[n], want[n], rtol=1e-4, atol=1e-5 * scale)


def _torchunlearn_hessian(model, images, batch_size, seed):
    """torchunlearn's FisherForget.get_hessian, transcribed: batch-mean CE per class, weighted by the batch-mean
    probability, divided by the number of batches (batches: a permutation drawn from ``seed``)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p) for n, p in named}
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    batches = [order[s : s + batch_size] for s in range(0, len(images), batch_size)]
    for idx in batches:
        out = model(as_unit(images[idx]))
        prob = F.softmax(out, dim=-1).detach()
        for y in range(out.shape[1]):
            model.zero_grad()
            F.cross_entropy(out, torch.full((len(idx),), y)).backward(retain_graph=True)
            for n, p in named:
                acc[n] += torch.mean(prob[:, y]) * p.grad.pow(2)
    return {n: v / len(batches) for n, v in acc.items()}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_batch_mean_estimator_is_torchunlearns(tiny, arch):
    model = _model(arch, tiny.info)
    images = tiny.train.images[:19]
    got = fisher_diagonal(model, images, batch_size=8, estimator="batch-mean", seed=4)
    want = _torchunlearn_hessian(_model(arch, tiny.info), images, 8, 4)
    per_sample = fisher_diagonal(model, images, batch_size=8)
    for n in want:
        scale = float(want[n].abs().max())
        assert scale > 0, n
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-5 * scale)
    # squaring batch means is not the mean of per-sample squares: the two estimators differ ...
    total = lambda f: sum(float(v.sum()) for v in f.values())
    diff = sum(float((got[n] - per_sample[n]).abs().sum()) for n in want) / total(per_sample)
    assert diff > 1e-3  # ten times the tolerance of the equalities here
    # ... except with batches of one sample, where the batch mean IS the sample
    ones = fisher_diagonal(model, images, batch_size=1, estimator="batch-mean", seed=4)
    for n in want:
        torch.testing.assert_close(ones[n], per_sample[n], rtol=1e-4, atol=1e-6 * float(per_sample[n].abs().max()))


def test_batch_mean_estimator_depends_on_its_seed_and_per_sample_does_not(tiny):
    model = _model("mlp", tiny.info)
    images = tiny.train.images[:19]
    a = fisher_diagonal(model, images, batch_size=8, estimator="batch-mean", seed=1)
    b = fisher_diagonal(model, images, batch_size=8, estimator="batch-mean", seed=2)
    assert any(not torch.allclose(a[n], b[n]) for n in a)
    c, d = (fisher_diagonal(model, images, batch_size=8, seed=s) for s in (1, 2))
    assert all(torch.equal(c[n], d[n]) for n in c)


def _omit_context(tiny, spec, omit, seed=5, arch="mlp"):
    split = cumulative_split(tiny, ForgetSpec.parse(spec), 0, None)
    model = _model(arch, tiny.info).eval()
    options = {**METHODS.get("fisher").defaults, "alpha": 1e-7, "batch_size": 16, "omit_label": omit}
    return UnlearnContext(model, tiny, split, CPU, seed, options, quiet=True)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_omit_label_redraws_the_forgotten_class_rows_around_zero(tiny, arch):
    """Golatkar / torchunlearn: mu = 0 and var = 1e-4 (x10, class row) on the forgotten class's rows; the rest as
    without omit_label, draw for draw."""
    k = tiny.info.num_classes
    on, off = _omit_context(tiny, "class:1", True, arch=arch), _omit_context(tiny, "class:1", False, arch=arch)
    theta0 = {n: p.detach().clone() for n, p in on.original.named_parameters()}
    got, base = dict(fisher(on).named_parameters()), dict(fisher(off).named_parameters())
    assert on.extra["omitted_classes"] == [1] and off.extra["omitted_classes"] == []
    with seeded(5, CPU):
        z = {n: torch.randn_like(p0) for n, p0 in theta0.items()}
    rows = [n for n, p in theta0.items() if p.shape[0] == k]
    assert len(rows) == 2
    for n in theta0:
        if n in rows:
            torch.testing.assert_close(got[n].detach()[1], (1e-3**0.5) * z[n][1], rtol=1e-5, atol=1e-7)
            keep = torch.arange(k) != 1
            torch.testing.assert_close(got[n].detach()[keep], base[n].detach()[keep])
            assert not torch.allclose(base[n].detach()[1], got[n].detach()[1])
        else:
            assert torch.equal(got[n], base[n]), n


def test_omit_label_ignores_the_original_row_and_skips_random_forgetting(tiny):
    a, b = _omit_context(tiny, "class:1", True), _omit_context(tiny, "class:1", True)
    head = [m for m in b.original.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.weight[1].mul_(3.0).add_(1.0)
    wa = [m for m in fisher(a).modules() if isinstance(m, torch.nn.Linear)][-1].weight.detach()
    wb = [m for m in fisher(b).modules() if isinstance(m, torch.nn.Linear)][-1].weight.detach()
    torch.testing.assert_close(wa[1], wb[1])  # the row no longer depends on what the original had learnt there
    r_on, r_off = _omit_context(tiny, "random:0.2", True), _omit_context(tiny, "random:0.2", False)
    for p, q in zip(fisher(r_on).parameters(), fisher(r_off).parameters()):
        assert torch.equal(p, q)
    assert r_on.extra["omitted_classes"] == []


def test_fisher_options_are_checked(tiny):
    for bad in ({"estimator": "exact"}, {"omit_label": "yes"}, {"alpha": -1.0}):
        ctx = _omit_context(tiny, "class:1", True)
        ctx.options.update(bad)
        with pytest.raises(ConfigError):
            fisher(ctx)
