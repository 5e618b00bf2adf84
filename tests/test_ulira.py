import json
import math

import pytest
import torch
from click.testing import CliRunner

from attacks.bootstrap import bootstrap_roc
from attacks.cli import main as attacks_main
from attacks.roc import auc, tpr_at_fpr
from attacks.ulira import Signals, UliraSetup, attack, derive_seed, plan_split, report, run, shadow_job
from dcforget.errors import ConfigError, DcForgetError

# few images, heavy noise and enough epochs: the MLP memorises its training images
SPEC = "synthetic:classes=2,train=40,test=10,size=8,noise=1.2"
TRAIN = {"epochs": 40, "batch_size": 20, "lr": 3e-3}


def test_splits_are_seeded_halves_with_forget_sets_inside():
    half, forgets = plan_split(100, 3, 4, 0.2, seed=0)
    again, _ = plan_split(100, 3, 4, 0.2, seed=0)
    assert torch.equal(half, again) and len(half) == 50 and forgets.shape == (4, 10)
    assert all(set(f.tolist()) <= set(half.tolist()) for f in forgets)
    assert len({tuple(f.tolist()) for f in forgets}) == 4  # four different forget sets
    assert not torch.equal(half, plan_split(100, 4, 4, 0.2, seed=0)[0])
    seeds = {
        derive_seed(0, s, f, r) for s in range(3) for f in range(3) for r in ("original", "reference", "under-test")
    }
    assert len(seeds) == 27  # no two models share a seed


def test_small_forget_sets_are_drawn_from_fixed_targets_so_each_is_observed_often():
    from attacks.ulira import expected_observations, target_examples

    targets = set(target_examples(1000, 40, seed=0).tolist())
    counts = torch.zeros(1000)
    for s in range(64):
        half, forgets = plan_split(1000, s, 4, 0.1, seed=0, forget_size=10, targets=40)
        assert forgets.shape == (4, 10) and all(set(f.tolist()) <= set(half.tolist()) for f in forgets)
        assert all(set(f.tolist()) <= targets for f in forgets)  # a half holds about 20 targets: enough for 10
        for f in forgets:
            counts[f] += 1
    setup = UliraSetup(SPEC, splits=64, forget_sets=4, forget_size=10, targets=40)
    assert expected_observations(setup) == 64 * 4 * 10 / 40
    assert counts[sorted(targets)].mean() == pytest.approx(expected_observations(setup))
    assert counts[sorted(targets)].min() >= 8  # every target is forgotten in enough models for its Gaussian
    without = plan_split(1000, 0, 4, 0.1, seed=0, forget_size=10)[1]  # no targets: drawn from the whole half
    assert without.shape == (4, 10) and not set(without.flatten().tolist()) <= targets
    assert "forget_size" not in UliraSetup(SPEC).job_specs()[0]  # unset: earlier stores keep their job addresses
    with pytest.raises(ConfigError, match="goes with forget_size"):
        UliraSetup(SPEC, targets=40)
    with pytest.raises(ConfigError, match="at least twice"):
        UliraSetup(SPEC, forget_size=30, targets=40)


def test_setup_is_validated():
    with pytest.raises(ConfigError, match="splits"):
        UliraSetup(SPEC, splits=2)
    with pytest.raises(ConfigError, match="retrains from scratch"):
        UliraSetup(SPEC, methods={"retrain": {}})
    with pytest.raises(ConfigError, match="clusters"):
        UliraSetup(SPEC, methods={"condensed": {}})
    with pytest.raises(DcForgetError, match="unknown model"):
        UliraSetup(SPEC, arch="nonsense")


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    setup = UliraSetup(SPEC, "mlp", TRAIN, {"none": {}}, splits=8, forget_sets=2, forget_fraction=0.5, splits_per_job=4)
    store = tmp_path_factory.mktemp("store")
    return setup, store, run(setup, store)


def test_separates_memorised_from_never_seen_and_not_retraining(memorised):
    setup, _, grid = memorised
    assert grid.computed == 4 and all(r["batched"] for r in grid.results)  # 2 groups: references, then "none"
    rep = report(setup, grid, bootstrap=200)
    orig, retrained, none = (rep["attacks"][v] for v in ("original", "retrained", "none"))
    assert orig["auc"] > 0.75 and orig["auc_ci"][0] > 0.5  # the original remembers its training images
    assert none["auc"] == orig["auc"]  # "none" unlearns nothing: the original's scores
    assert retrained["auc_ci"][0] < 0.5 < retrained["auc_ci"][1]  # an independent retraining passes the null test
    assert retrained["auc"] != 0.5  # and is a different model from the reference (AUC exactly 0.5 if shared)
    for r in (orig, retrained):
        assert r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1] and 0.5 <= r["accuracy"] <= 1
        assert r["target_models"] == 16 and r["pairs"] > 0
        assert 0 <= r["observations"]["own_variance_share_forgotten"] <= 1
    assert set(rep["seconds_per_model"]) == {"original", "reference", "retrained", "none"}


def test_reruns_read_back_and_more_splits_add_jobs(memorised):
    setup, store, grid = memorised
    again = run(setup, store)
    assert again.computed == 0 and again.keys == grid.keys
    more = UliraSetup(**{**setup.__dict__, "splits": 12})
    bigger = run(more, store)
    assert (bigger.computed, bigger.reused) == (2, 4)  # only the new splits are trained
    # another method reads the references and retrainings back: only its own jobs are computed
    other = UliraSetup(**{**setup.__dict__, "methods": {"none": {}, "finetune": {"epochs": 1}}})
    added = run(other, store)
    assert (added.computed, added.reused) == (2, 4)
    rep = report(other, added, bootstrap=0)
    assert rep["attacks"]["none"]["auc"] == rep["attacks"]["original"]["auc"]  # the method jobs' originals are the same
    assert rep["attacks"]["finetune"]["auc"] != rep["attacks"]["none"]["auc"]
    assert "finetune:original" in rep["seconds"] and rep["seconds_per_model"]["original"] > 0


def test_batched_and_one_by_one_jobs_agree(tmp_path):
    kw = dict(arch="mlp", train={"epochs": 3, "batch_size": 20}, splits=3, forget_sets=1, splits_per_job=3)
    fast = run(UliraSetup(SPEC, batched=True, **kw), tmp_path)
    slow = run(UliraSetup(SPEC, batched=False, **kw), tmp_path)
    assert fast.results[0]["batched"] and not slow.results[0]["batched"]
    for key in ("conf_original", "conf_reference", "conf_retrained"):
        torch.testing.assert_close(
            torch.from_numpy(fast.results[0][key]), torch.from_numpy(slow.results[0][key]), rtol=1e-3, atol=1e-3
        )


def _plain_scores(sig: Signals, variant: str, min_obs: int):
    """U-LiRA's statistic transcribed with loops, for the vectorised one to match."""
    s_count, f_count, n = sig.in_forget.shape
    v, r = sig.conf[variant], sig.reference
    pos, neg = [], []
    for s in range(s_count):
        stats = {}
        for side in ("f", "n"):
            obs = [[] for _ in range(n)]
            for s2 in range(s_count):
                if s2 == s:
                    continue
                for f2 in range(f_count):
                    for i in range(n):
                        if side == "f" and sig.in_forget[s2, f2, i]:
                            obs[i].append(float(v[s2, f2, i]))
                        if side == "n" and not sig.in_train[s2, i]:
                            obs[i].append(float(r[s2, f2, i]))
            mus = [sum(o) / len(o) if o else 0.0 for o in obs]
            sss = [sum((x - m) ** 2 for x in o) for o, m in zip(obs, mus)]
            pooled = sum(sss) / max(sum(max(len(o) - 1, 0) for o in obs), 1)
            sds = [max(math.sqrt(ss / (len(o) - 1) if len(o) >= min_obs else pooled), 1e-6) for o, ss in zip(obs, sss)]
            stats[side] = (mus, sds, [len(o) for o in obs])
        for f in range(f_count):
            for i in range(n):
                if not sig.in_forget[s, f, i] or stats["f"][2][i] == 0 or stats["n"][2][i] == 0:
                    continue

                def llr(x):
                    (mf, sf), (mn, sn) = ((stats[k][0][i], stats[k][1][i]) for k in ("f", "n"))
                    return (-0.5 * ((x - mf) / sf) ** 2 - math.log(sf)) - (-0.5 * ((x - mn) / sn) ** 2 - math.log(sn))

                pos.append(llr(float(v[s, f, i])))
                neg.append(llr(float(r[s, f, i])))
    return torch.tensor(pos), torch.tensor(neg)


def test_vectorised_statistic_matches_a_plain_transcription():
    g = torch.Generator().manual_seed(0)
    s_count, f_count, n = 5, 2, 12
    in_train = torch.rand(s_count, n, generator=g) < 0.5
    in_forget = (torch.rand(s_count, f_count, n, generator=g) < 0.5) & in_train[:, None]
    ref = torch.randn(s_count, f_count, n, generator=g, dtype=torch.float64)
    v = ref + 1.5 * in_forget + 0.3 * torch.randn(s_count, f_count, n, generator=g, dtype=torch.float64)
    sig = Signals(in_train, in_forget, {"v": v}, ref)
    for min_obs in (2, 3, 100):  # per-example variance for most, some, none of the examples
        want_pos, want_neg = _plain_scores(sig, "v", min_obs)
        got = attack(sig, "v", min_observations=min_obs, bootstrap=0)
        assert got["pairs"] == len(want_pos)
        assert got["auc"] == pytest.approx(auc(want_pos, want_neg), abs=1e-9)
        assert got["tpr_at_1pct_fpr"] == pytest.approx(tpr_at_fpr(want_pos, want_neg, 0.01), abs=1e-9)


def test_bootstrap_roc_point_and_interval():
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(400, generator=g) + 1, torch.randn(400, generator=g)
    groups = torch.arange(400) % 20
    out = bootstrap_roc(pos, neg, groups, 20, bootstrap=300, seed=0)
    assert out["auc"] == pytest.approx(auc(pos, neg), abs=1e-12)
    assert out["tpr_at_1pct_fpr"] == pytest.approx(tpr_at_fpr(pos, neg, 0.01), abs=1e-12)
    assert out["auc_ci"][0] < out["auc"] < out["auc_ci"][1] and out["auc_ci"][1] - out["auc_ci"][0] < 0.2
    same = bootstrap_roc(neg, neg.clone(), groups, 20, bootstrap=100)
    assert same["auc"] == pytest.approx(0.5) and same["accuracy"] == pytest.approx(0.5)


def test_cli_runs_and_routes_options(tmp_path, monkeypatch):
    import unlearn.tuned as tuned_mod

    tuned = tmp_path / "cfg" / "tuned" / "cpu" / "synthetic-mlp" / "finetune.json"  # tuned for random forgetting
    tuned.parent.mkdir(parents=True)
    tuned.write_text(
        json.dumps(
            {
                "method": "finetune",
                "dataset": "synthetic",
                "model": "mlp",
                "preset": "cpu",
                "options": {"lr": 0.02, "epochs": 3},
                "setup": {"forget": "random:0.1"},
                # the setting the attacked methods run in: originals on half the pool (80 images), 2 epochs
                "tuned_on": {
                    "dataset": "synthetic",
                    "model": "mlp",
                    "train_size": 40,
                    "num_classes": 2,
                    "epochs": 2,
                    "forget_kind": "random",
                },
            }
        )
    )
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "cfg"])
    out = tmp_path / "ulira.json"
    args = [
        "ulira",
        SPEC,
        "--model",
        "mlp",
        "--epochs",
        "2",
        "--splits",
        "4",
        "--forget-sets",
        "2",
        "--forget-fraction",
        "0.5",
        "--splits-per-job",
        "2",
        "--bootstrap",
        "20",
        "--method",
        "none",
        "--method",
        "finetune",
        "--option",
        "epochs=1",
        "--store",
        str(tmp_path / "jobs"),
    ]
    res = CliRunner().invoke(attacks_main, [*args, "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert set(rep["attacks"]) == {"original", "retrained", "none", "finetune"}
    # an option goes where it belongs, over the method's tuned options
    assert rep["setup"]["methods"] == {"none": {}, "finetune": {"lr": 0.02, "epochs": 1}}
    assert set(rep["tuned"]) == {"finetune"} and rep["tuned"]["finetune"]["file"] == str(tuned)
    assert (
        rep["meta"]["git"] and rep["executor"]["executor"] == "local" and rep["jobs"]["computed_now"] == 6
    )  # 2 groups: references, none, finetune
    res = CliRunner().invoke(attacks_main, [*args, "--out", str(out), "--force"])
    assert res.exit_code == 0 and "0 computed now, 6 read back" in res.output
    assert "  finetune: forget confidence" in res.output  # each variant's diagnosis, as the report has it
    assert set(rep["attacks"]["finetune"]["diagnosis"]) == {"shift", "shift_median", "spread", "mean_correlation"}
    res = CliRunner().invoke(attacks_main, [*args, "--option", "nonsense=1", "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "unknown option 'nonsense'" in res.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--splits", "3", "--forget-sets", "1", "--forget-fraction", "0.05"], "would be forgotten in 0.1 models"),
        (["--address", "10.0.0.1:1"], "--address is for the ray executor"),
        (["--method", "retrain"], "retrains from scratch"),
        (["--forget-size", "5", "--targets", "500"], "--targets 500 exceeds the pool (80 examples)"),
        (["--targets", "10"], "targets goes with forget_size"),
        (["--method", "none (reduced)"], "reads no retain set"),
        (["--pool-seed", "1"], "needs a per-class cap"),
        (["--method", "finetune (reduced)"], "give clusters"),
        (["--method", "finetune (half)"], "unknown"),
        (["--forget-size", "2", "--splits", "4", "--forget-sets", "1"], "would be forgotten in 0.1 models"),
    ],
)
def test_cli_refuses_bad_setups_before_any_work(tmp_path, extra, message):
    out, store = tmp_path / "u.json", tmp_path / "jobs"
    res = CliRunner().invoke(
        attacks_main, ["ulira", SPEC, "--epochs", "1", "--store", str(store), *extra, "--out", str(out)]
    )
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and message in lines[0], res.output
    assert not out.exists() and not store.exists()


def test_cli_refuses_a_file_as_the_store(tmp_path):
    store = tmp_path / "jobs"
    store.write_text("mine\n")
    res = CliRunner().invoke(
        attacks_main,
        [
            "ulira",
            SPEC,
            "--epochs",
            "1",
            "--splits",
            "4",
            "--forget-fraction",
            "0.5",
            "--store",
            str(store),
            "--out",
            str(tmp_path / "u.json"),
        ],
    )
    assert res.exit_code == 2 and "is a file" in res.output and len(res.output.strip().splitlines()) == 1
    assert store.read_text() == "mine\n"


def _null_signals(g: torch.Generator, s_count=24, f_count=2, n=60, frac=0.25, twin=False) -> Signals:
    """Retraining against retraining: the model under test and the reference are identically distributed. Per
    example a difficulty; per split a shift of each example shared by all the split's models (its half, its
    original); per (split, forget set) a shift shared by the two models trained on that retain set."""
    in_train = torch.zeros(s_count, n, dtype=torch.bool)
    in_forget = torch.zeros(s_count, f_count, n, dtype=torch.bool)
    for s in range(s_count):
        half = torch.randperm(n, generator=g)[: n // 2]
        in_train[s, half] = True
        for f in range(f_count):
            in_forget[s, f, half[torch.randperm(len(half), generator=g)[: int(frac * len(half))]]] = True
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    shared = r(n) + 0.5 * r(s_count, 1, n) + 0.5 * r(s_count, f_count, n)
    conf = {"v": shared + 0.5 * r(s_count, f_count, n)}
    reference = shared + 0.5 * r(s_count, f_count, n)
    if twin:  # a second variant with the same law as "v" (drawn after the reference: the rest is unchanged)
        conf["twin"] = shared + 0.5 * r(s_count, f_count, n)
    return Signals(in_train, in_forget, conf, reference)


def test_cluster_bootstrap_is_calibrated_on_a_null_setting():
    """The 95% interval holds AUC 0.5 in at least 90% of null repetitions (measured: all of them), and its width
    matches the spread of the AUC over repetitions (2 x 1.96 x its sample std; measured 10-40% wider, i.e.
    conservative: refitting on draws that repeat a split fits it as two). Resampling target models as if
    independent gives narrower intervals (measured 20-30% narrower here; 85-96% coverage over 80-150
    repetitions at three generator seeds): it ignores that the forget sets of one split share its fit."""
    from attacks.ulira import _Fit

    g = torch.Generator().manual_seed(0)
    reps, aucs, widths, naive_widths, covered, naive_covered = 80, [], [], [], 0, 0
    for rep in range(reps):
        sig = _null_signals(g)
        out = attack(sig, "v", bootstrap=100, seed=rep)
        assert out["bootstrap_replicates_scored"] == 100
        aucs.append(out["auc"])
        lo, hi = out["auc_ci"]
        covered += lo <= 0.5 <= hi
        widths.append(hi - lo)
        fit = _Fit(sig, "v", 8)
        pos, neg, s, ok, _ = fit.scores()
        f_count = sig.in_forget.shape[1]
        naive = bootstrap_roc(
            pos[ok],
            neg[ok],
            (s * f_count + fit.where[1])[ok],
            sig.in_forget.shape[0] * f_count,
            bootstrap=100,
            seed=rep,
        )
        naive_covered += naive["auc_ci"][0] <= 0.5 <= naive["auc_ci"][1]
        naive_widths.append(naive["auc_ci"][1] - naive["auc_ci"][0])
    spread = 2 * 1.96 * torch.tensor(aucs).std().item()  # the width a calibrated 95% interval has
    width, naive_width = sum(widths) / reps, sum(naive_widths) / reps
    assert abs(sum(aucs) / reps - 0.5) < 0.01  # the null holds
    assert covered / reps >= 0.9 and 0.9 * spread < width < 1.5 * spread, (covered, width, spread)
    assert naive_width < 0.9 * width and naive_covered <= covered, (naive_covered, naive_width, width)


def test_cluster_bootstrap_refits_on_the_drawn_splits():
    """A draw that repeats one split weighs its pairs by the repeat count, and the fit of a row leaves every copy
    of its own split out: the weighted fit equals the fit on the data with that split's moments duplicated."""
    from attacks.ulira import _gaussian, _moments

    g = torch.Generator().manual_seed(3)
    sig = _null_signals(g, s_count=5, f_count=2, n=12, frac=0.5)
    count, total, squares = _moments(sig.reference, sig.in_forget)
    w = torch.tensor([[2.0, 0.0, 1.0, 1.0, 1.0]])
    mu_w, sd_w, c_w, _ = _gaussian(count, total, squares, 3, w)
    dup = [torch.cat([m[:1], m[:1], m[2:]]) for m in (count, total, squares)]  # split 0 twice, split 1 dropped
    mu_d, sd_d, c_d, _ = _gaussian(*dup, 3)
    # rows of split 2..4 see the same other splits either way; split 0's row excludes both copies of itself
    torch.testing.assert_close(mu_w[0, 2:], mu_d[2:])
    torch.testing.assert_close(c_w[0, 2:], c_d[2:])
    torch.testing.assert_close(c_w[0, 0], count[2:].sum(0))


def test_the_interval_holds_the_point_estimate_where_the_attack_has_signal():
    """Refitting on draws that repeat splits lowers every replicate when the attack has signal; the interval is
    re-centred on the point estimate, so it holds it (it did not before: the original's 0.990 outside [0.985,
    0.989] on the cpu preset)."""
    g = torch.Generator().manual_seed(5)
    sig = _null_signals(g)
    sig.conf["v"] = sig.conf["v"] + 1.5 * sig.in_forget  # the model under test still knows its forget set
    out = attack(sig, "v", bootstrap=200, seed=0)
    assert out["auc"] > 0.75 and out["auc_bootstrap_shift"] > 0  # signal, and the replicates sit below it
    for k in ("auc", "accuracy", "tpr_at_1pct_fpr"):
        assert out[f"{k}_ci"][0] <= out[k] <= out[f"{k}_ci"][1], k


def test_a_method_label_chooses_its_retain_source_and_a_policy_gives_its_studys_options(tmp_path):
    """`--method 'NAME (reduced)'` serves the method the reduced set of a per-split FDM file (the same options, the
    other source: another model), and `--options-from POLICY.json#KIND` gives each label the options its study
    chose on validation, the report saying which file and entry."""
    from unlearn.policy import SCHEMA, VERSION

    policy = tmp_path / "policy.json"
    cands = [
        {"method": "finetune", "retain": "full", "options": {"lr": 0.05, "epochs": 2}, "norm": 0.3},
        {"method": "finetune", "retain": "reduced", "options": {"lr": 0.05, "epochs": 2}, "norm": 0.2},
    ]
    entry = {**cands[1], "candidates": cands, "setup": {"forget": "random:0.1"}}
    policy.write_text(json.dumps({"schema": SCHEMA, "version": VERSION, "preset": "cpu", "entries": {"large": entry}}))
    args = ["ulira", SPEC, "--model", "mlp", "--epochs", "2", "--splits", "4", "--forget-sets", "2"]
    args += ["--forget-fraction", "0.5", "--splits-per-job", "4", "--bootstrap", "0", "--clusters", "2"]
    args += ["--method", "finetune (full)", "--method", "finetune (reduced)", "--store", str(tmp_path / "jobs")]
    out = tmp_path / "u.json"
    res = CliRunner().invoke(attacks_main, [*args, "--options-from", f"{policy}#large", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "finetune (reduced) study" in res.output and "forced by --options-from" in res.output
    rep = json.loads(out.read_text())
    assert set(rep["attacks"]) == {"original", "retrained", "finetune (full)", "finetune (reduced)"}
    assert rep["setup"]["methods"] == {
        "finetune (full)": cands[0]["options"],
        "finetune (reduced)": cands[1]["options"],
    }
    assert rep["tuned"]["finetune (reduced)"]["file"] == str(policy)
    a, b = rep["attacks"]["finetune (full)"], rep["attacks"]["finetune (reduced)"]
    assert a["auc"] != b["auc"]  # one model trained on the retain set, the other on the reduced set
    assert "finetune (reduced):condense" in rep["seconds"] and "finetune (full):condense" not in rep["seconds"]
    # a policy entry with no study for a named label: one error line, nothing written
    res = CliRunner().invoke(
        attacks_main,
        [
            *args[:-6],
            "--method",
            "kde",
            "--store",
            str(tmp_path / "jobs"),
            "--options-from",
            f"{policy}#large",
            "--out",
            str(tmp_path / "v.json"),
        ],
    )
    assert res.exit_code == 2 and "none of kde is a candidate" in res.output and not (tmp_path / "v.json").exists()
    # two sources for one label: refused, not one silently dropped
    tuned = tmp_path / "finetune.json"
    tuned.write_text(json.dumps({"method": "finetune", "options": {"lr": 0.01}, "setup": {}, "meta": {}}))
    res = CliRunner().invoke(
        attacks_main,
        [*args, "--options-from", f"{policy}#large", "--options-from", str(tuned), "--out", str(tmp_path / "t.json")],
    )
    assert res.exit_code == 2 and "two sources for 'finetune (full)'" in res.output, res.output
    res = CliRunner().invoke(
        attacks_main, [*args, "--options-from", f"{policy}#huge", "--out", str(tmp_path / "w.json")]
    )
    assert res.exit_code == 2 and "KIND one of" in res.output, res.output


def test_another_pool_seed_is_another_pool_and_other_jobs(tmp_path):
    """--pool-seed draws another capped pool (options can be chosen on it without reading the reported pool's
    attack): the setup records it and its jobs are other jobs."""
    from attacks.request import UliraRequest

    kw = dict(model="mlp", epochs=1, splits=4, forget_fraction=0.5, per_class=10, store=tmp_path / "jobs")
    a = UliraRequest(SPEC, tmp_path / "a.json", **kw).prepare()
    b = UliraRequest(SPEC, tmp_path / "b.json", pool_seed=1, **kw).prepare()
    assert (a.setup.data_seed, b.setup.data_seed) == (0, 1)
    assert a.setup.job_specs() != b.setup.job_specs()
    from dcforget.datasets import load_data

    pa, pb = (load_data(SPEC, None, 10, seed=s, val_fraction=0.0) for s in (0, 1))
    assert not torch.equal(pa.source_indices, pb.source_indices)


def test_a_changed_default_keys_the_method_jobs_again_but_not_the_references(monkeypatch):
    """A method job is keyed with its method's registered defaults: after a default changes, the attack trains
    that method's models again instead of reading back models unlearned under the old default."""
    from dcforget.jobs import job_key
    from unlearn.methods import METHODS

    setup = UliraSetup(dataset=SPEC, splits=4, splits_per_job=2, train=TRAIN, methods={"finetune": {"epochs": 1}})
    keys = lambda: [(s["part"], job_key(shadow_job, s, "v")) for s in setup.job_specs()]  # noqa: E731
    before = keys()
    monkeypatch.setitem(METHODS.get("finetune").defaults, "lr", 0.123)
    after = keys()
    assert [k for p, k in before if p == "references"] == [k for p, k in after if p == "references"]
    assert not set(k for p, k in before if p == "method") & set(k for p, k in after if p == "method")


def test_the_diagnosis_reads_a_shift_and_a_spread_against_the_never_seen_fit():
    """A variant shifted by d sd of its never-seen fit reads a shift near d; one scattered r times as much reads a
    spread near r; retraining against retraining reads about 0 and 1, with means that follow the reference's."""
    g = torch.Generator().manual_seed(3)
    sig = _null_signals(g, s_count=24, f_count=2, n=200)
    sd_n = float((sig.reference - sig.reference.mean((0, 1))).std())  # the null's spread around each example
    null = attack(sig, "v", bootstrap=0)["diagnosis"]
    assert abs(null["shift"]) < 0.15 and 0.8 < null["spread"] < 1.25 and null["mean_correlation"] > 0.8
    base = sig.conf["v"]
    noise = torch.randn(base.shape, generator=g, dtype=torch.float64)
    shifted = Signals(sig.in_train, sig.in_forget, {"v": base + 1.0 * sd_n}, sig.reference)
    got = attack(shifted, "v", bootstrap=0)
    assert 0.8 < got["diagnosis"]["shift"] < 1.2 and got["auc"] > 0.6
    scattered = Signals(sig.in_train, sig.in_forget, {"v": base + 1.7 * sd_n * noise}, sig.reference)
    got = attack(scattered, "v", bootstrap=0)["diagnosis"]
    assert got["spread"] > 1.5 and abs(got["shift"]) < 0.2
    flat = Signals(sig.in_train, sig.in_forget, {"v": torch.zeros_like(base)}, sig.reference)
    got = attack(flat, "v", bootstrap=0)["diagnosis"]  # one confidence for every example: no correlation to read
    assert got["mean_correlation"] is None and got["spread"] < 0.01


def test_a_paired_difference_sees_what_two_separate_intervals_hide():
    """Two variants of one pool draw the same splits in every bootstrap replicate (same seed), so their AUC difference
    is read per draw: a small real difference whose two intervals overlap lies wholly above zero when paired, and
    the difference of two identically distributed variants holds zero in most repetitions."""
    from attacks.ulira import paired_auc_difference

    g = torch.Generator().manual_seed(7)
    sig = _null_signals(g, s_count=24, f_count=2, n=120)
    base = sig.conf["v"]
    worse = attack(Signals(sig.in_train, sig.in_forget, {"v": base + 0.2 * sig.in_forget}, sig.reference), "v",
                   bootstrap=200, seed=0)  # fmt: skip
    ref = attack(sig, "v", bootstrap=200, seed=0)
    assert len(worse["auc_replicates"]) == 200 == len(ref["auc_replicates"])
    assert worse["auc_ci"][0] < ref["auc_ci"][1]  # the separate intervals overlap
    p = paired_auc_difference(worse, ref)
    assert p["difference"] == pytest.approx(worse["auc"] - ref["auc"]) and p["replicates_paired"] == 200
    assert 0 < p["difference_ci"][0] <= p["difference"] <= p["difference_ci"][1] and p["share_below_zero"] < 0.05
    held = 0
    for rep in range(20):
        sig = _null_signals(torch.Generator().manual_seed(100 + rep), s_count=12, f_count=2, n=60, twin=True)
        twin = sig.conf.pop("twin")  # the same law as "v", another draw of its own noise
        a = attack(sig, "v", bootstrap=100, seed=rep)
        b = attack(Signals(sig.in_train, sig.in_forget, {"v": twin}, sig.reference), "v", bootstrap=100, seed=rep)
        lo, hi = paired_auc_difference(a, b)["difference_ci"]
        held += lo <= 0 <= hi
    assert held >= 16, held
    with pytest.raises(ConfigError, match="auc_replicates"):
        paired_auc_difference({"auc": 0.6}, ref)
    with pytest.raises(ConfigError, match="cannot be paired"):
        paired_auc_difference({**ref, "auc_replicates": ref["auc_replicates"][:10]}, ref)


def test_ulira_compare_pairs_two_reports_of_one_pool_only(tmp_path):
    from attacks.cli import main as attacks_main

    g = torch.Generator().manual_seed(7)
    sig = _null_signals(g, s_count=12, f_count=2, n=60)
    entry = attack(sig, "v", bootstrap=50, seed=0)
    setup = {"dataset": "cifar10", "arch": "mlp", "train": {"epochs": 30}, "per_class": None, "data_seed": 1,
             "splits": 12, "forget_sets": 2, "forget_fraction": 0.1, "seed": 0, "forget_size": 10, "targets": 100}  # fmt: skip

    def write(name, attacks, **changes):
        (tmp_path / name).write_text(json.dumps({"setup": {**setup, **changes}, "attacks": attacks}))
        return str(tmp_path / name)

    a = write("a.json", {"condensed": entry, "retrained": entry})
    b = write("b.json", {"condensed": {**entry, "auc": entry["auc"] - 0.01}})
    other_pool = write("c.json", {"condensed": entry}, data_seed=0)
    two = write("d.json", {"condensed": entry, "kde": entry})
    run = CliRunner().invoke
    res = run(attacks_main, ["ulira-compare", a, b])
    assert res.exit_code == 0 and "condensed" in res.output and "+0.010" in res.output, res.output
    for args, msg in (([a, other_pool], "data_seed"), ([two, b], "name one"), ([a, b, "--variant", "nope"], "no variant"),
                      ([a, str(tmp_path / "none.json")], "no such file")):  # fmt: skip
        res = run(attacks_main, ["ulira-compare", *args])
        assert res.exit_code == 2 and msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
    res = run(attacks_main, ["ulira-compare", a, b, "--out", str(tmp_path / "cmp.json")])
    got = json.loads((tmp_path / "cmp.json").read_text())
    assert res.exit_code == 0 and got["difference"] == pytest.approx(0.01) and got["a"]["variant"] == "condensed"
    res = run(attacks_main, ["ulira-compare", a, b, "--out", str(tmp_path / "cmp.json")])  # exists, no --force
    assert res.exit_code == 2 and json.loads((tmp_path / "cmp.json").read_text()) == got
    for bad in ("{not json", "[" * 100_000, '{"setup": {}, "attacks": {"v": {"auc": 1' + "0" * 5000 + "}}}"):
        (tmp_path / "bad.json").write_text(bad)
        res = run(attacks_main, ["ulira-compare", a, str(tmp_path / "bad.json")])
        assert res.exit_code == 2 and "not a readable JSON" in res.output, res.output
    huge = write("huge.json", {"condensed": {**entry, "auc": 10**400}})  # parses, but no float holds it
    res = run(attacks_main, ["ulira-compare", a, huge])
    assert res.exit_code == 2 and "no AUC" in res.output, res.output
