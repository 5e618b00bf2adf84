"""Attacks benchmark: population MIA (+ SSD's entropy attack and SalUn's SVC-MIA), U-LiRA and model inversion on
the original, retrained, finetuned and DC-U-default unlearned CNNs, on real CIFAR-10.

    .venv/bin/python bench/attacks_bench.py --preset cpu --data-dir data [--out runs/bench_attacks.json]
    .venv/bin/python bench/attacks_bench.py --preset paper --data-dir data --device cuda

Part 1 (one forget request, random:0.1, seed 0) works on the unlearning benchmark's cached original and FDM file
(bench/unlearn_bench.py's offline phase, same --work). Inversion scores every model's reconstructions against the
forget set with an evaluation CNN trained on the test split (it never saw a training image).
Part 2 is U-LiRA: shadows trained on random halves of a (smaller, on cpu) training set, each with its original,
retrained, finetuned and default-unlearned model; signals go to an HDF5 file in --work, so a rerun resumes.
Presets:
  cpu    part 1 on the unlearning benchmark's cpu preset (1,000/class, K=100); U-LiRA on 300/class (halves of
         3,000), 8 shadows, 15-epoch shadows, FDM K=30 per shadow; finetune 10 epochs; SVC fitted on 2,000/side; class inversion 100 steps;
         condensive inversion 5 sub-classes x 5 generator epochs on 200 test images per class
  paper  part 1 on 4,500/class, K=450; U-LiRA on the full 4,500/class, 64 shadows, 30 epochs, K=450
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from attacks.epsilon import logit_confidence
from attacks.inversion import condensive_invert, invert_classes, score_reconstructions
from attacks.mia_variants import entropy_lr_mia, svc_mia
from attacks.roc import auc, tpr_at_fpr
from attacks.ulira import attack, run_shadows
from condense.build import build_condensed
from dcforget.datasets import load_data
from dcforget.images import save_grid
from dcforget.io import atomic_path
from dcforget.metrics import population_mia
from dcforget.provenance import run_meta
from dcforget.runtime import resolve_device
from dcforget.train import TrainConfig, embed
from unlearn.artefacts import original_model
from unlearn.request import unlearn_request
from unlearn_bench import PRESETS as UNLEARN_PRESETS
from unlearn_bench import offline, resolve, work_dir

PRESETS = {
    "cpu": {"unlearn": "cpu", "shadow_per_class": 300, "shadows": 8, "shadow_epochs": 15, "shadow_clusters": 30,
            "finetune_epochs": 10, "svc_max": 2000, "inv_steps": 100, "cond_subclasses": 5, "cond_epochs": 5,
            "cond_pool": 200, "evaluator_epochs": 20},
    "paper": {"unlearn": "paper", "shadow_per_class": 4500, "shadows": 64, "shadow_epochs": 30, "shadow_clusters": 450,
              "finetune_epochs": 10, "svc_max": None, "inv_steps": 300, "cond_subclasses": 20, "cond_epochs": 200,
              "cond_pool": None, "evaluator_epochs": 30},
}
MODELS = ("original", "retrain", "finetune", "condensed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default="runs/bench-unlearn")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--shadows", type=int, default=None, help="override the preset's shadow count")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: mia,inversion,ulira")
    ap.add_argument("--out", default=None, help="JSON report")
    ap.add_argument("--grids", default="runs/bench-attacks", help="inversion PNG grids go here")
    args = ap.parse_args()
    p = dict(PRESETS[args.preset])
    if args.shadows:
        p["shadows"] = args.shadows
    skip = set(filter(None, args.skip.split(",")))
    dev = resolve_device(args.device)
    up = resolve(UNLEARN_PRESETS[p["unlearn"]], dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; preset {args.preset}: {p}; unlearning preset {up}", flush=True)
    args.epochs = args.per_class = args.clusters = None
    data, original, cs = offline(args, up, dev)
    report = {"preset": args.preset, "settings": p, "unlearn_preset": up, "device": name}
    spec, seed = "random:0.1", 0
    opts = {"retrain": {"bf16": up["bf16"]}, "finetune": {"bf16": up["bf16"], "epochs": p["finetune_epochs"]},
            "condensed": {"bf16": up["bf16"]}}

    # ------------------------------------------------------------------ part 1: one request, every model
    models, forget = {"original": original.eval()}, None
    for m in MODELS[1:]:
        r = unlearn_request(original, data, spec, m, device=dev, seed=seed, options=opts[m], quiet=True,
                            condensed=cs if m == "condensed" else None)
        models[m], forget = r.model.eval(), r.split.forget
        print(f"{m}: unlearned in {r.report['time']['total_s']:.1f} s", flush=True)
    keep = torch.ones(len(data.train), dtype=torch.bool, device=data.train.labels.device)
    keep[forget.to(keep.device)] = False
    fx, fy = data.train.images[forget.to(keep.device)], data.train.labels[forget.to(keep.device)]
    if "mia" not in skip:
        rows = report["mia"] = {}
        for m, model in models.items():
            lg = lambda x: embed(model, x, device=dev, logits=True).cpu()
            ret = (lg(data.train.images[keep]), data.train.labels[keep].cpu())
            tst, fgt = (lg(data.test.images), data.test.labels.cpu()), (lg(fx), fy.cpu())
            f_loss = torch.nn.functional.cross_entropy(fgt[0], fgt[1], reduction="none")
            t_loss = torch.nn.functional.cross_entropy(tst[0], tst[1], reduction="none")
            t0 = time.perf_counter()
            svc = svc_mia(ret, tst, fgt, max_per_side=p["svc_max"], seed=seed)
            cf, ct = logit_confidence(*fgt), logit_confidence(*tst)
            rows[m] = {"mia": population_mia(f_loss, t_loss, seed=seed).accuracy, "auc": auc(cf, ct),
                       "tpr_at_1pct_fpr": tpr_at_fpr(cf, ct, 0.01),
                       "entropy_lr_member_rate": entropy_lr_mia(ret, tst, fgt, seed=seed),
                       "svc_efficacy": svc["efficacy"], "svc_seconds": time.perf_counter() - t0,
                       "forget_acc": float((fgt[0].argmax(1) == fgt[1]).float().mean()),
                       "test_acc": float((tst[0].argmax(1) == tst[1]).float().mean())}
            r = rows[m]
            print(f"MIA {m:10s} pop {100 * r['mia']:6.2f} AUC {r['auc']:.3f} TPR@1% {r['tpr_at_1pct_fpr']:.3f} "
                  f"entropy-LR member rate {r['entropy_lr_member_rate']:.3f} SVC-conf efficacy "
                  f"{r['svc_efficacy']['confidence']:.3f} ({r['svc_seconds']:.0f} s)", flush=True)

    if "inversion" not in skip:
        ev_path = work_dir(args, {**up, "evaluator_epochs": p["evaluator_epochs"]}) / "evaluator.pt"
        evaluator_data = replace(data, train=data.test, source_indices=torch.arange(len(data.test)), _fingerprint=None)
        evaluator = original_model(ev_path, evaluator_data, "cnn", TrainConfig(epochs=p["evaluator_epochs"], bf16=up["bf16"]),
                                   device=dev, seed=12345).eval()
        grids = Path(args.grids)
        rows = report["inversion"] = {}
        classes = list(range(data.info.num_classes))
        for m, model in models.items():
            t0 = time.perf_counter()
            rec, tg = invert_classes(model, data.info.num_classes, data.info.image_shape, per_class=2,
                                     steps=p["inv_steps"], seed=seed)
            t1 = time.perf_counter()
            crec, ctg = condensive_invert(model, data, pool="test", subclasses=p["cond_subclasses"],
                                          epochs=p["cond_epochs"], pool_per_class=p["cond_pool"], seed=seed)
            t2 = time.perf_counter()
            save_grid([rec[tg == c] for c in classes], grids / f"class-{m}.png", columns=2, scale=3, force=True)
            save_grid([crec[ctg == c] for c in classes], grids / f"condensive-{m}.png", columns=p["cond_subclasses"],
                      scale=3, force=True)
            rows[m] = {"class": {**score_reconstructions(rec, tg, fx, fy, evaluator), "seconds": t1 - t0},
                       "condensive": {**score_reconstructions(crec, ctg, fx, fy, evaluator), "seconds": t2 - t1}}
            for k, r in rows[m].items():
                print(f"inversion {m:10s} {k:10s} SSIM {r['ssim']:.3f} feature-cos {r['feature_cosine']:.3f} "
                      f"evaluator acc {r['evaluator_accuracy']:.2f} ({r['seconds']:.0f} s)", flush=True)

    # ------------------------------------------------------------------ part 2: U-LiRA over shadows
    if "ulira" not in skip:
        sdata = load_data(args.dataset, args.data_dir, p["shadow_per_class"], seed=0).to(dev)
        signals = work_dir(args, {**up, "attack": p}) / f"ulira-{args.preset}.h5"

        def condensed_fn(orig, half):
            return build_condensed(half, "fdm", orig, device=dev, seed=seed, clusters=p["shadow_clusters"],
                                   quiet=True).condensed

        info = run_shadows(sdata, "cnn", TrainConfig(epochs=p["shadow_epochs"], bf16=up["bf16"]),
                           {"finetune": opts["finetune"], "condensed": opts["condensed"]}, shadows=p["shadows"],
                           signals=signals, device=dev, seed=seed, forget_fraction=0.1, condensed_fn=condensed_fn)
        rows = report["ulira"] = {"seconds_per_shadow": info["seconds_per_shadow"], "trained_now": info["trained"]}
        print(f"U-LiRA: {info['trained']} shadows trained now, {info['seconds_per_shadow']:.1f} s per shadow", flush=True)
        for v in ("original", "retrained", "finetune", "condensed"):
            r = attack(signals, v)
            rows[v] = {k: r[k] for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "examples", "shadows")}
            print(f"U-LiRA {v:10s} AUC {r['auc']:.3f} TPR@1%FPR {r['tpr_at_1pct_fpr']:.3f} TPR@0.1%FPR "
                  f"{r['tpr_at_0.1pct_fpr']:.3f} ({r['examples']} examples, {r['shadows']} shadows)", flush=True)
    if args.out:
        report["meta"] = run_meta(dev, seeds=[seed])
        with atomic_path(args.out, force=True) as tmp:
            tmp.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
