"""Why does the small-request rule compound over a stream? Candidates on VALIDATION figures (selection half).

Twenty successive 10-image requests at DC-U's MLP settings (42,500 training images, FDM K=450 per class), seed S,
the same draws as reports/choices-small-paper/explore2.py (generator(S * 7919 + 1)); retraining of the same
draws after requests 1, 5, 10 and 20 is read from that exploration's JSON files (RETRAIN_JSON, comma-separated).

Each candidate changes one thing in the small-request rule of `condensed` (monkeypatched here, nothing in the
toolkit changes):

- rule: the registered rule (no reset, no DSA, 40 steps at lr 1e-4, distillation from the request's own starting
  model on the reduced set, forget ascent bounded at the validation loss);
- anchor: the teacher's logits on the condensed rows come from the stream's first original instead of the
  previous request's model (the condensed images stand for buckets the original trained on; touched real images
  keep the previous model as teacher). The hypothesis: the teacher drifts with the student, so nothing holds the
  stream to the original's knowledge of the retain set;
- ce-real: the cross-entropy weighs condensed rows at 1e-3 of their bucket weight (the condensed rows stay in the
  distillation): the hypothesis that fitting the synthetic images' labels drifts the model;
- anchor+ce-real: both;
- distill4: distillation weight 4 (from 1), teacher unchanged;
- round 2 (anchor+ce-real held RA but forgot less): anchor+ce-real with the ascent at weight 4
  (anchor+ce-real+fw4) or pushed to 1.5x the validation loss (anchor+ce-real+tau1.5).
- round 4 (reports/choices-stream100-paper: on 100-image requests ``forget_match=neighbours`` held RA at the
  original's level where the rule drifted): ``forget_match=neighbours`` alone, with 100 steps and with lr 3e-4, and
  100 steps or lr 3e-4 alone (options of the toolkit, nothing monkeypatched). They ran at 58817cd, under the rule of
  that commit (40 steps at 1e-4, the mean target); at later commits a request of up to 10 images runs the same rule.
- round 6 (after round 4: the per-example target held RA but its val gap was not smaller than the rule's): the
  per-example target at tau 0.8 and 0.6 (``forget_ce``), at 40 steps and 1e-4; run at d720cb9 or later, whose rule
  for up to 10 new images is round 4's. From session 26 the toolkit's default for up to 10 new images is
  neighbours-tau0.6 (``forget_match=auto``: the per-example target, its tau ``forget_ce`` x
  ``small_neighbours_scale`` 0.6). Every candidate here ran under the earlier default (the mean target): to rerun
  one, add ``forget_match=mean`` to its options, or ``small_neighbours_scale=1`` to a ``neighbours`` candidate.
- round 8 (session 28, the AMD EPYC VM; the originals and condensed files of reports/stream-10-paper-amd's run,
  retraining read from this folder's explore3-sS.json): U-LiRA's lead on the selection pool
  (reports/ulira-select-small10-cpu/round4: ``forget_match=rank forget_push=confidence forget_weight=0.1``) beside
  the rule (the registered default) in the same run. Its first run (86dc470, where the target was
  ``neighbours_source=rank``) re-ranked earlier requests' images among trained ones on every request and pushed them
  ever further (RA fell request after request); from the commit of its JSON files an earlier request's image is held
  at its current loss.
- round 9 (session 29, the AMD EPYC VM): the trainers now cut even batches (reports/tail-batch-paper), so the
  stream's originals reach retraining's retain accuracy, and on the test split's stream (reports/stream-10-paper at
  fef68bd) the rule ends *over* retraining's RA (continued fitting of the retain set). The originals and condensed
  files of that run; retraining of the same draws recomputed here ("-": the old files' retraining used the old cut).
  Candidates that hold the model nearer its start: the rule, anchor, distill4, ce-real, anchor+ce-real. Criterion,
  fixed before the run: as before, the smallest mean val gap over requests 5, 10 and 20, on every seed.
- round 10 (session 31, the AMD EPYC VM; round 9's originals, condensed files and draws, its retraining read from
  round9/explore3-sS.json): the registered rule beside ``small_label_weight`` 0.75, 0.5 and 0.25 (the weight of the
  reduced set's cross-entropy on its labels; distillation and forget term unchanged), the same lead as
  reports/choices-stream100-paper's round 8 (the rule's retain accuracy ends over retraining's by continued fitting
  of the labels). Criterion as round 9's.
- round 11 (session 32; round 9's originals, condensed files, draws and retraining, like round 10): the rule (its
  labels weigh 0.25 here since round 10) beside ``decay`` (``small_label_decay=sqrt``), ``hinge``
  (``small_labels=hinge``) and ``hinge-lw1`` (the hinge at label weight 1), the candidates of
  reports/choices-stream100-paper's round 9. Criterion as round 9's; round11/README.md says how the two streams
  decide together. Rounds 10 and 11 ran at 2c20688 and 3678d22; from 5c06949 on the registered rule is round 11's
  ``hinge-lw1`` and the ``lw*`` candidates run under the hinge: to rerun round 10, or either round's ``rule``, check
  out its commit (round 11's other candidates pin what they ran).
- round 12 (session 32, a probe at the rule of 5c06949; round 9's originals, draws and retraining): ``qc`` and
  ``qc-w0.3`` of reports/choices-stream100-paper's round 10 beside the rule; criterion in round12/README.md.
- round 13 (session 33, at the rule of ab1f310; round 9's originals, draws and retraining): ``hold``, ``new`` and
  ``qcn-w0.3`` of reports/choices-stream100-paper's round 11 beside the rule; criterion in round13/README.md.
"""

import json
import math
import statistics
import sys
from pathlib import Path

import torch

import unlearn.methods.condensed as cm
from dcforget.checkpoint import open_checkpoint
from dcforget.condensed_store import read_condensed
from dcforget.runtime import generator
from dcforget.train import embed
from unlearn.methods.base import UnlearnContext
from unlearn.methods.distill import kd_kl
from unlearn.request import unlearn_request

AT = (1, 5, 10, 20)
K = ("retain_acc", "forget_acc", "test_acc", "mia")
CANDS = {
    "rule": {},
    "rank-push": {"options": {"forget_match": "rank", "forget_push": "confidence", "forget_weight": 0.1}},
    "rank-push-w0.03": {"options": {"forget_match": "rank", "forget_push": "confidence", "forget_weight": 0.03}},
    "rank-push-d4": {
        "options": {"forget_match": "rank", "forget_push": "confidence", "forget_weight": 0.1, "distill": 4.0}
    },
    "rank-push-w0.03-d4": {
        "options": {"forget_match": "rank", "forget_push": "confidence", "forget_weight": 0.03, "distill": 4.0}
    },
    "anchor": {"anchor": True},
    "ce-real": {"ce_scale": 1e-3},
    "anchor+ce-real": {"anchor": True, "ce_scale": 1e-3},
    "distill4": {"options": {"distill": 4.0}},
    "anchor+ce-real+fw4": {"anchor": True, "ce_scale": 1e-3, "options": {"forget_weight": 4.0}},
    "anchor+ce-real+tau1.5": {"anchor": True, "ce_scale": 1e-3, "options": {"forget_ce": 1.5}},
    # round 4 (after reports/choices-stream100-paper: per-example forget targets held RA flat over 100-image requests)
    "neighbours": {"options": {"forget_match": "neighbours"}},
    "neighbours-s100": {"options": {"forget_match": "neighbours", "small_steps": 100}},
    "neighbours-lr3e-4": {"options": {"forget_match": "neighbours", "small_lr": 3e-4}},
    "s100": {"options": {"small_steps": 100}},
    "lr3e-4": {"options": {"small_lr": 3e-4}},
    # round 6: the per-example target with a lower tau (with 100 steps it over-forgot; at 40 its FA ran low on seed 0)
    "neighbours-tau0.8": {"options": {"forget_match": "neighbours", "forget_ce": 0.8}},
    "neighbours-tau0.6": {"options": {"forget_match": "neighbours", "forget_ce": 0.6}},
    # round 10: the reduced set's cross-entropy on its labels weighed down (distillation and forget term unchanged)
    "lw0.75": {"options": {"small_label_weight": 0.75}},
    "lw0.5": {"options": {"small_label_weight": 0.5}},
    "lw0.25": {"options": {"small_label_weight": 0.25}},
    # round 11: labels that stop fitting as the stream goes on (reports/choices-stream100-paper's round 9 too)
    "decay": {
        "options": {
            "small_label_decay": "sqrt",
            "small_labels": "fit",
            "small_label_weight": 0.25,
            "small_label_weight_upper": 0.5,
        }
    },  # round 11's candidates pin the label rule they ran beside (3678d22's: fit, 0.25 / 0.5)
    "hinge": {"options": {"small_labels": "hinge", "small_label_weight": 0.25, "small_label_weight_upper": 0.5}},
    "hinge-lw1": {"options": {"small_labels": "hinge", "small_label_weight": 1.0, "small_label_weight_upper": 1.0}},
    # round 12: a probe of the memorised confidence of the forget images that stay correct (the MIA's signature)
    "qc": {"options": {"forget_match": "quantiles", "forget_push": "confidence", "forget_batch": 64}},
    "qc-w0.3": {
        "options": {"forget_match": "quantiles", "forget_push": "confidence", "forget_batch": 64, "forget_weight": 0.3}
    },
    # round 13: labels held at the start model's loss both ways; the forget batch drawn from the new images only
    "hold": {"options": {"small_labels": "hold"}},
    "new": {"options": {"forget_draw": "new"}},
    "qcn-w0.3": {
        "options": {
            "forget_match": "quantiles",
            "forget_push": "confidence",
            "forget_batch": 64,
            "forget_weight": 0.3,
            "forget_draw": "new",
        }
    },
}
ROUND6 = {"neighbours-tau0.8", "neighbours-tau0.6"}
ROUND4 = {n for n in CANDS if n.startswith("neighbours")} - ROUND6 | {"s100", "lr3e-4"}
ROUND8 = {"rule"} | {
    n for n in CANDS if n.startswith("rank-push")
}  # U-LiRA's lead (reports/ulira-select-small10-cpu/round4) against the rule, same run


def gap(r, ref):
    """Euclidean distance in points on RA, FA, selection-half VA and selection-half val MIA."""
    keys = ("retain_acc", "forget_acc", "sel_val_acc", "sel_val_mia")
    return 100 * math.sqrt(sum((r[k] - ref[k]) ** 2 for k in keys))


def report(out: Path) -> None:
    main_folder = out.resolve().name == "choices-stream-paper"  # rounds 1-6; a subfolder holds a later round
    rows = []
    for f in sorted(out.glob("explore3-s*.json")):
        d = json.loads(f.read_text())
        for name, per in d["candidates"].items():
            for at, r in per.items():
                rows.append((d["seed"], name, int(at), r, d["retrain"].get(at)))
    seeds = sorted({t[0] for t in rows})
    means = {}  # candidate -> request -> val gaps over seeds
    for seed, name, at, r, ref in rows:
        if ref:
            means.setdefault(name, {}).setdefault(at, []).append(gap(r, ref))
    lines = [
        "# Stream drift of the small-request rule: candidates on validation",
        "",
        "Generated by `python reports/choices-stream-paper/explore3.py report reports/choices-stream-paper` from the",
        "JSON files beside it; each JSON names its command, commit, machine and seed.",
        "",
    ]
    for f in sorted(out.glob("explore3-s*.json")):
        d = json.loads(f.read_text())
        lines += [f"- `{f.name}`: `{d['command']}` at {d['git']}, {d['machine']}, seed {d['seed']}"]
    lines += [
        "",
        "val gap to R: Euclidean distance in points to retraining of the same draws on RA, FA, selection-half VA "
        "and selection-half val MIA (TA is shown, never read). s: the request's seconds, not read"
        + (
            ": seed 0's first file ran while a 15-second test shared the CPU; every other file ran alone."
            if main_folder
            else " (round 8's runs shared the CPU with short tests at times)."
            if out.resolve().name == "round8"
            else "; every file ran alone."
        ),
        "",
        "| seed | candidate | request | RA | FA | VA (sel) | val MIA (sel) | TA | val gap to R | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, name, at, r, ref in sorted(
        rows, key=lambda t: (t[0], list(CANDS).index(t[1]) if t[1] in CANDS else 99, t[2])
    ):
        g = f"{gap(r, ref):.1f}" if ref else ""
        lines.append(
            f"| {seed} | {name} | {at} | {100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.0f} | "
            f"{100 * r['sel_val_acc']:.1f} | {100 * r['sel_val_mia']:.0f} | {100 * r['test_acc']:.1f} | {g} | "
            f"{r['seconds']:.2f} |"
        )
    lines += [
        "",
        "Mean val gap to R over the seeds (± sample std), after each request and over requests 5, 10 and 20 (the "
        "choice's criterion, as in reports/choices-small-paper):",
        "",
        "| candidate | seeds | request 1 | request 5 | request 10 | request 20 | mean of 5, 10, 20 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, per in sorted(means.items(), key=lambda kv: list(CANDS).index(kv[0]) if kv[0] in CANDS else 99):
        cell = lambda v: f"{statistics.fmean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"
        late = [statistics.fmean(per[a]) for a in (5, 10, 20) if a in per]
        lines.append(
            f"| {name} | {len(per.get(20, []))} | "
            + " | ".join(cell(per[a]) if a in per else "" for a in AT)
            + f" | {statistics.fmean(late):.1f} |"
        )
    full = {n: per for n, per in means.items() if all(len(per.get(a, [])) == len(seeds) for a in (5, 10, 20))}
    best = min(full, key=lambda n: statistics.fmean(statistics.fmean(full[n][a]) for a in (5, 10, 20)))
    lines += ["", f"Smallest mean val gap (candidates run on every seed, {len(seeds)}): **{best}**."]
    if best != "rule" and main_folder:
        lines += [
            "",
            f"**Adopted** (session 26, as the lower anchor of the small-request rule: the per-example target, "
            f"`forget_match=auto`, at tau `forget_ce` x `small_neighbours_scale` 0.6): {best} came out smallest in round 6, "
            "by less than the seeds' spread, and it also holds RA at the original's level where the mean target "
            "drifts. reports/stream-10-paper runs it; the cpu policy's small entry names its own target "
            "(configs/policy/cpu/cifar10-mlp.json).",
        ]
    lines += [
        "",
        "Retraining:",
        "",
        "| seed | request | RA | FA | VA (sel) | val MIA (sel) | TA | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed in sorted({t[0] for t in rows}):
        d = json.loads(min(out.glob(f"explore3-s{seed}*.json")).read_text())  # every file of a seed holds the same
        for at, ref in sorted(d["retrain"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {seed} | {at} | {100 * ref['retain_acc']:.1f} | {100 * ref['forget_acc']:.0f} | "
                f"{100 * ref['sel_val_acc']:.1f} | {100 * ref['sel_val_mia']:.0f} | {100 * ref['test_acc']:.1f} | "
                f"{ref['seconds']:.1f} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1] == "report":
        report(Path(sys.argv[2]))
        return
    from dcforget.provenance import git_hash, machine

    ck_path, cond_path, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    code = git_hash()  # read before the run: the checkout may move on while it runs
    retrain = {}  # "-": retrain here, at the requests of AT (selection-half validation figures of the same draws)
    for f in sys.argv[5].split(",") if sys.argv[5] != "-" else []:
        got = json.loads(Path(f).read_text())
        if "retrain" in got:  # an earlier explore3 file of this seed
            retrain.update(got["retrain"])
        else:  # explore.py / explore2.py: {"retrain@N": {...}}
            retrain.update({k.split("@")[1]: v for k, v in got.items()})
    names = sys.argv[6:] or list(CANDS)
    tag = (
        "round2"
        if set(names) <= {"anchor+ce-real+fw4", "anchor+ce-real+tau1.5"}
        else "round3"
        if set(names) <= {"ce-real", "distill4"} and seed != 0
        else "round4"
        if set(names) <= ROUND4
        else "round6"
        if set(names) <= ROUND6
        else "round8"
        if set(names) <= ROUND8
        else ""
    )  # round 3: seed 0's single-seed candidates on seeds 1 and 2
    out.mkdir(parents=True, exist_ok=True)
    ck, data = open_checkpoint(ck_path, "data", False)
    dev = torch.device("cpu")
    data = data.to(dev)
    cond = read_condensed(cond_path)
    first = ck.model.eval()
    n = len(data.train)
    g = generator(seed * 7919 + 1)
    forgotten = torch.zeros(n, dtype=torch.bool)
    reqs = []
    for c in range(20):
        left = torch.nonzero(~forgotten).flatten()
        chunk = left[torch.randperm(len(left), generator=g)[:10]]
        p = out / "streams" / f"s{seed}-r{c + 1}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text("\n".join(map(str, sorted(chunk.tolist()))) + "\n")
        reqs.append((p, torch.nonzero(forgotten).flatten().tolist()))
        forgotten[chunk] = True

    real_distillation, real_tensors = cm._distillation, UnlearnContext.reduced_tensors
    state = {}

    def anchored(ctx, x, o, teacher_mode, clean=None):  # clean: the toolkit's shared pass, not read here
        if float(o["distill"]) <= 0:
            return None
        assert teacher_mode == "clean", teacher_mode
        gone = ctx.forgotten_classes().to(ctx.device)
        n_real = len(ctx.reduced.real_indices)
        prev = ctx.copy_original().eval()
        t = torch.cat(
            [
                embed(prev, x[:n_real], device=ctx.device, logits=True),
                embed(first, x[n_real:], device=ctx.device, logits=True),
            ]
        ).masked_fill(gone, float("-inf"))
        alpha, temp = float(o["distill"]), float(o["temperature"])
        return lambda logits, inputs, idx: alpha * kd_kl(logits, t[idx], temp)

    def scaled(self):
        x, y, w = real_tensors(self)
        w = w.clone()
        w[len(self.reduced.real_indices) :] *= state["ce_scale"]
        return x, y, w

    res = {}
    if sys.argv[5] == "-":
        for c in (a - 1 for a in AT):
            p, prev = reqs[c]
            r = unlearn_request(
                ck.model,
                data,
                f"indices:{p}",
                "retrain",
                device=dev,
                seed=seed,
                quiet=True,
                previous_forget=prev,
                validation="halves",
            )
            rep = r.report
            retrain[str(c + 1)] = {
                **{k: rep[k] for k in K},
                "sel_val_acc": rep["selection_val_acc"],
                "sel_val_mia": rep["selection_val_mia"],
                "seconds": rep["time"]["total_s"],
            }
            print("retrain", c + 1, retrain[str(c + 1)], flush=True)
    for name in names:
        spec = CANDS[name]
        cm._distillation = anchored if spec.get("anchor") else real_distillation
        state["ce_scale"] = spec.get("ce_scale", 1.0)
        UnlearnContext.reduced_tensors = scaled if "ce_scale" in spec else real_tensors
        m, per = ck.model, {}
        for c in range(20):
            p, prev = reqs[c]
            r = unlearn_request(
                m,
                data,
                f"indices:{p}",
                "condensed",
                device=dev,
                seed=seed,
                quiet=True,
                options=spec.get("options", {}),
                condensed=cond,
                previous_forget=prev,
                validation="halves",
            )
            m, rep = r.model, r.report
            if c + 1 in AT:
                per[str(c + 1)] = {
                    **{k: rep[k] for k in K},
                    "sel_val_acc": rep["selection_val_acc"],
                    "sel_val_mia": rep["selection_val_mia"],
                    "seconds": rep["time"]["total_s"],
                }
                print(name, c + 1, per[str(c + 1)], flush=True)
        res[name] = per
    cm._distillation, UnlearnContext.reduced_tensors = real_distillation, real_tensors
    (out / f"explore3-s{seed}{'-' + tag if tag else ''}.json").write_text(
        json.dumps(
            {
                "command": "python " + " ".join(sys.argv),
                "git": code,
                "machine": machine(),
                "seed": seed,
                "retrain": retrain,
                "candidates": res,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
