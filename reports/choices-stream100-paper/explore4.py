"""Which rule should a 100-image request of a stream run? Candidates on VALIDATION figures (selection half).

The small-request rule of `condensed` (no reset, no DSA, ``small_steps`` 40 at ``small_lr`` 1e-4, distillation from
the request's own start model, forget ascent bounded at the validation loss, ``forget_weight`` 1) was chosen on
10-image requests (reports/choices-small-paper, reports/choices-stream-paper). On the test split's 100-image stream
(reports/stream-100-paper as committed at 0c7d686) it under-forgot (FA 80 against retraining's 53 after request 1)
and RA drifted (-3.5 -> -13.1). This exploration compares, on validation, options of the toolkit's own method.

Every candidate ran at e1ab393-b7d8eb9, under that rule: "rule" is those registered defaults, and ``small_steps`` /
``small_lr`` set a 100-image request's steps and rate. From eef3217 on, the defaults at 100 new images are this
exploration's choice (the small-request rule's upper anchor) and ``small_steps`` / ``small_lr`` no longer act there:
to rerun it, check out b7d8eb9.

- rule: the registered defaults;
- neighbours: ``forget_match=neighbours`` (each forget image pushed to its own never-seen level, not the mean);
- fw4: ``forget_weight=4``;
- s100: ``small_steps=100``;
- lr3e-4: ``small_lr=3e-4``;
- s100-fw4: both;
- per-sample: ``small_request=0`` (the per-sample rule: partial reset of everything, DSA, at least min_steps);
- round 2, written after seed 0's round 1 (neighbours held RA at the original's level over the ten requests where
  the rule drifted 10 points, but left FA some 20 points over retraining's): neighbours with a stronger forgetting
  (weight 4, 100 steps, lr 3e-4, tau 1.5, 100 steps at weight 4), run on every seed.
- round 3, written after round 1 on seeds 0 and 1 (100 steps or lr 3e-4 came closest; the FA gap dominates):
  ``forget_match=quantiles`` (the batch's sorted losses onto the validation losses' quantiles, which a 100-image
  batch can estimate), alone and with 100 steps; 100 steps at lr 3e-4, with the mean and the neighbours targets.
- round 5 (no round 4 here: explore3's round 4 is the 10-image stream's): the forget term's batch. By default each
  step draws the forget set's share of a reduced-set batch, 4 of the 100 images at request 1 (256 x 100 / 6,444),
  whose mean loss is a noisy stand-in for the forget set's, so the bounded ascent stops early; ``forget_batch=64``
  (a toolkit option added for this), with the mean and the neighbours targets, alone and with 100 steps (round 3's
  closest with it was written here and never run).
- round 6 (session 30, at the registered rule of eef3217: at 100 new images it is round 3's choice, the
  per-example target with ``small_steps_upper`` 100 at ``small_lr_upper`` 3e-4): the originals of rounds 1-5
  ended every epoch on a 4-image batch; since 4f340db they are trained on even batches (reports/tail-batch-paper),
  and on the test split's 100-image stream rerun with them (reports/stream-100-paper at fef68bd) the rule
  under-forgets (FA 8.5-14.3 points over retraining's) while RA sits within about a point. Round 6 reruns the rule
  beside stronger or steadier forgetting on those originals, with retraining of the same draws recomputed (the
  earlier files' retraining used the old cut), in its own folder (OUT/round6): ``forget_batch=64`` (the same push
  per image in expectation, 64 images a step instead of 4: less noise), ``forget_weight=2``, both, ``forget_ce=1.5``
  (each image's target at 1.5 times its neighbours' never-seen loss), and that with the 64-image batch. From 7ace815
  on, the registered rule includes the 64-image batch, so ``rule`` reruns fb64: to rerun round 6's rule, check out
  ab19d0e.
- round 7 (after round 6, whose criterion chose ``forget_batch=64``: FA came to retraining's, but RA rose request
  after request, 2 points over retraining's by request 10 on every seed, once the forget images sat at their
  targets and the remaining steps only fitted the reduced set): fb64 again beside it with fewer steps
  (``small_steps_upper=50``), a lower rate (``small_lr_upper=1e-4``) or a stronger distillation towards the request's
  start model (``distill=2``), in OUT/round7, reading round 6's retraining (the same originals and draws). The
  criterion is round 6's, over round 7's candidates (fb64 included).
- round 8 (session 31, after a diagnostic on seed 0: over the stream fb64 raised the accuracy of the reduced set's
  real images from 91.7 to 97.1 and of the retain images outside it from 94.2 to 95.6 by request 10, so the rise is
  continued fitting of the labels, not only of the served real images): the registered rule (fb64 since 7ace815)
  beside ``small_label_weight`` 0.75, 0.5 and 0.25 (the weight of the reduced set's cross-entropy on its labels; the
  distillation towards the request's start model and the forget term unchanged), in OUT/round8, reading round 6's
  retraining. The criterion is round 6's, over round 8's candidates.
- round 9 (session 32, at a rule whose labels weigh 0.5 here since round 8: RA still rose to 1.5 points over
  retraining's by request 10 on the test split, reports/stream-100-paper at 00609e2): two ways for the labels to
  stop fitting as a stream goes on, beside the registered rule, in OUT/round9, reading round 6's retraining:
  ``decay`` (``small_label_decay=sqrt``: the label weight divided by the square root of the stream's position,
  everything forgotten over the request's new images), ``hinge`` (``small_labels=hinge``: each reduced-set row's
  cross-entropy pulls only above the request's start model's loss on it: the labels repair what the forget term
  disturbs and fit no further) and ``hinge-lw1`` (the hinge at weight 1). The criterion is round 6's, over round 9's
  candidates; read with reports/choices-stream-paper's round 11 (same candidates), whose README says how both
  streams decide together. Rounds 8 and 9 ran at 2c20688 and 3678d22; from 5c06949 on the registered rule is round
  9's ``hinge-lw1`` (and round 8's ``lw*`` set a weight that no longer acts at 100 images): to rerun round 8's
  candidates or either round's ``rule``, check out its commit (round 9's other candidates pin what they ran).
- round 10 (session 32, a probe at the rule of 5c06949, the label hinge): the forget images that stay correctly
  classified keep a memorised confidence (the population MIA's signature on both streams and on large requests);
  ``qc`` moves each 64-image forget batch's sorted logit-scaled confidences onto those of the validation losses'
  quantiles (``forget_match=quantiles forget_push=confidence forget_batch=64``), ``qc-w0.3`` at weight 0.3, beside
  the rule, in OUT/round10, reading round 6's retraining; with reports/choices-stream-paper's round 12. Criterion
  (round10/README.md there, fixed before the run): round 9's joint criterion; a candidate that meets it is adopted
  only after both test streams are rerun with it (not in session 32).
- round 11 (session 33, at the rule of ab1f310): the rule's RA still creeps up about 0.1 a request on test, and
  round 10's transport kept moving earlier requests' images: ``hold`` (``small_labels=hold``: each reduced-set row's
  cross-entropy held at the request's start model's, pulled back up where it fell as well as down where it rose),
  ``new`` (``forget_draw=new``: the forget batch drawn from the request's new images only), ``qcn-w0.3`` (round 10's
  ``qc-w0.3`` drawn from the new images only), beside the rule, in OUT/round11, reading round 6's retraining; with
  reports/choices-stream-paper's round 13. Criterion (round13/README.md there, fixed before the run): round 9's
  joint criterion; a candidate that meets it is adopted, and both test streams are rerun with it.

Ten successive requests of 100 images at DC-U's MLP settings (42,500 training images, FDM K=450 per class), each
drawn uniformly from what is left (generator(S * 7919 + 2), written under OUT/streams/); seed S starts from the
100-image stream's own original and condensed file of that seed (reports/stream-100-paper's artefacts). Retraining
without everything forgotten so far after requests 1, 5 and 10 is run here, on the same draws.

The criterion, fixed before any candidate ran: the smallest mean (over seeds, then over requests 1, 5 and 10) of
the val gap to retraining, the Euclidean distance in points on RA, FA, selection-half VA and selection-half val MIA;
among candidates run on every seed whose request time stays under the stream's bound (0.05x retraining's).

Usage: python explore4.py CHECKPOINT CONDENSED SEED OUT [CANDIDATE ...]
       python explore4.py report OUT  (writes OUT/report.md from OUT/explore4-*.json)
"""

import json
import math
import statistics
import sys
from pathlib import Path

import torch

from dcforget.checkpoint import open_checkpoint
from dcforget.condensed_store import read_condensed
from dcforget.runtime import generator
from unlearn.request import unlearn_request

AT = (1, 5, 10)
SIZE, CYCLES = 100, 10
K = ("retain_acc", "forget_acc", "test_acc", "mia")
CANDS = {
    "rule": {},
    "neighbours": {"forget_match": "neighbours"},
    "fw4": {"forget_weight": 4.0},
    "s100": {"small_steps": 100},
    "lr3e-4": {"small_lr": 3e-4},
    "s100-fw4": {"small_steps": 100, "forget_weight": 4.0},
    "per-sample": {"small_request": 0.0},
}
ROUND2 = {  # after seed 0's round 1: neighbours held RA flat over the stream but under-forgot; stronger forgetting
    "neighbours-fw4": {"forget_match": "neighbours", "forget_weight": 4.0},
    "neighbours-s100": {"forget_match": "neighbours", "small_steps": 100},
    "neighbours-lr3e-4": {"forget_match": "neighbours", "small_lr": 3e-4},
    "neighbours-tau1.5": {"forget_match": "neighbours", "forget_ce": 1.5},
    "neighbours-s100-fw4": {"forget_match": "neighbours", "small_steps": 100, "forget_weight": 4.0},
}
ROUND3 = {  # after round 1 on seeds 0 and 1: more steps or a higher rate came closest (FA dominates the gap)
    "quantiles": {"forget_match": "quantiles"},
    "quantiles-s100": {"forget_match": "quantiles", "small_steps": 100},
    "s100-lr3e-4": {"small_steps": 100, "small_lr": 3e-4},
    "neighbours-s100-lr3e-4": {"forget_match": "neighbours", "small_steps": 100, "small_lr": 3e-4},
}
ROUND5 = {  # the forget term's batch: the forget set's share of a reduced-set batch is 4 images at request 1 here
    "fb64": {"forget_batch": 64},
    "fb64-s100": {"forget_batch": 64, "small_steps": 100},
    "neighbours-fb64": {"forget_match": "neighbours", "forget_batch": 64},
    "neighbours-fb64-s100": {"forget_match": "neighbours", "forget_batch": 64, "small_steps": 100},
}
ROUND6 = {  # even-batch originals: the rule under-forgets on the test stream; steadier or stronger forgetting
    "fb64": {"forget_batch": 64},
    "fw2": {"forget_weight": 2.0},
    "fb64-fw2": {"forget_batch": 64, "forget_weight": 2.0},
    "tau1.5": {"forget_ce": 1.5},
    "fb64-tau1.5": {"forget_batch": 64, "forget_ce": 1.5},
}
ROUND7 = {  # after round 6 chose fb64: its RA rose over retraining's; fewer steps, a lower rate, more distillation
    "fb64": {"forget_batch": 64},
    "fb64-s50": {"forget_batch": 64, "small_steps_upper": 50},
    "fb64-lr1e-4": {"forget_batch": 64, "small_lr_upper": 1e-4},
    "fb64-d2": {"forget_batch": 64, "distill": 2.0},
}
ROUND8 = {  # after a diagnostic: the rise is continued fitting of the reduced set's labels; weigh them down
    "rule": {},
    "lw0.75": {"small_label_weight": 0.75},
    "lw0.5": {"small_label_weight": 0.5},
    "lw0.25": {"small_label_weight": 0.25},
}
ROUND9 = {  # after round 8 (labels at 0.5): RA still rose; labels that stop fitting as the stream goes on
    "rule": {},
    "decay": {
        "small_label_decay": "sqrt",
        "small_labels": "fit",
        "small_label_weight": 0.25,
        "small_label_weight_upper": 0.5,
    },
    "hinge": {"small_labels": "hinge", "small_label_weight": 0.25, "small_label_weight_upper": 0.5},
    "hinge-lw1": {"small_labels": "hinge", "small_label_weight": 1.0, "small_label_weight_upper": 1.0},
}  # each candidate pins the label rule it ran beside (the rule of 3678d22: fit, 0.25 / 0.5)
_QC = {"forget_match": "quantiles", "forget_push": "confidence", "forget_batch": 64}
ROUND10 = {"rule": {}, "qc": _QC, "qc-w0.3": {**_QC, "forget_weight": 0.3}}  # a probe of the MIA's signature
ROUND11 = {  # session 33: the rule's RA still creeps ~0.1 a request; round 10's transport moved earlier images
    "rule": {},
    "hold": {"small_labels": "hold"},
    "new": {"forget_draw": "new"},
    "qcn-w0.3": {**_QC, "forget_weight": 0.3, "forget_draw": "new"},
}
LATE = {"round6": ROUND6, "round7": ROUND7, "round8": ROUND8, "round9": ROUND9, "round10": ROUND10, "round11": ROUND11}
ALL = {**CANDS, **ROUND2, **ROUND3, **ROUND5}
RETRAINED = ("", "round6")  # the rounds that retrain here (the others divide by round 1's retraining)


def gap(r, ref):
    """Euclidean distance in points on RA, FA, selection-half VA and selection-half val MIA."""
    keys = ("retain_acc", "forget_acc", "sel_val_acc", "sel_val_mia")
    return 100 * math.sqrt(sum((r[k] - ref[k]) ** 2 for k in keys))


def figures(rep):
    return {
        **{k: rep[k] for k in K},
        "sel_val_acc": rep["selection_val_acc"],
        "sel_val_mia": rep["selection_val_mia"],
        "seconds": rep["time"]["total_s"],
    }


def slowest(rows) -> str:
    """The slowest request against its candidate's median (read from the files, not typed)."""
    secs = {}
    for seed, name, at, r in rows:
        secs.setdefault(name, []).append((r["seconds"], seed, at))
    name = max(secs, key=lambda n: max(secs[n])[0] / statistics.median(s for s, _, _ in secs[n]))
    top, seed, at = max(secs[name])
    med = statistics.median(s for s, _, _ in secs[name])
    return (
        f"The slowest request against its candidate's median: {name}, seed {seed}, request {at}, {top:.1f} s "
        f"against a median of {med:.1f} s (a sign of contention where it is far over)."
    )


def report(out: Path) -> None:
    files = sorted(out.glob("explore4-s*.json"))
    late = out.resolve().name in LATE
    retrain, rows = {}, []
    if late and out.resolve().name != "round6":  # round 6's retraining: the same originals and draws
        for f in sorted((out.parent / "round6").glob("explore4-s*.json")):
            d = json.loads(f.read_text())
            retrain.setdefault(d["seed"], {}).update(d["retrain"])
    for f in files:
        d = json.loads(f.read_text())
        retrain.setdefault(d["seed"], {}).update(d.get("retrain", {}))
        for name, per in d["candidates"].items():
            for at, r in per.items():
                rows.append((d["seed"], name, int(at), r))
    seeds = sorted(retrain)
    gaps, ratios = {}, {}  # candidate -> request -> per-seed values
    for seed, name, at, r in rows:
        ref = retrain[seed].get(str(at))
        gaps.setdefault(name, {}).setdefault(at, []).append(gap(r, ref))
        ratios.setdefault(name, []).append(r["seconds"] / ref["seconds"])
    names = list({**ALL, **ROUND6, **ROUND7, **ROUND8, **ROUND9, **ROUND10, **ROUND11}) if late else list(ALL)
    order = lambda n: names.index(n) if n in names else 99  # noqa: E731
    lines = [
        "# 100-image requests of a stream: candidates for the small-request rule on validation",
        "",
        f"Generated by `python reports/choices-stream100-paper/explore4.py report {out.as_posix()}`",
        "from the JSON files beside it; each names its command, commit, machine and seed. What is compared and the",
        "criterion (fixed before any candidate ran) are in explore4.py's docstring.",
        "",
    ]
    for f in files:
        d = json.loads(f.read_text())
        lines.append(f"- `{f.name}`: `{d['command']}` at {d['git']}, {d['machine']}, seed {d['seed']}")
    lines += [
        "",
        "A seed varies the stream's draws and its own original (initialisation and data order) with its condensed",
        "file. val gap to R: Euclidean distance in points to retraining of the same draws on RA, FA, selection-half VA",
        "and selection-half val MIA (TA is shown, never read). time / R: the request's seconds over retraining's",
        "after the same request: every file ran alone on the machine"
        + (
            (
                ", and each divides by its own retraining (the same invocation). "
                if out.resolve().name == "round6"
                else ", and each divides by round 6's retraining of the same draws (another invocation). "
            )
            if late
            else ", and the round-2, 3 and 5 files, which do not retrain, divide by round 1's retraining of the same "
            "draws (another invocation). "
        )
        + slowest(rows),
        "",
        "| candidate | seeds | request 1 | request 5 | request 10 | mean of 1, 5, 10 | time / R (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for name, per in sorted(gaps.items(), key=lambda kv: order(kv[0])):
        n = min(len(per.get(a, [])) for a in AT)
        cell = lambda v: f"{statistics.fmean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"  # noqa: E731
        mean = statistics.fmean(statistics.fmean(per[a]) for a in AT)
        summary[name] = (n, mean, max(ratios[name]))
        lines.append(
            f"| {name} | {n} | " + " | ".join(cell(per[a]) for a in AT) + f" | {mean:.1f} | {max(ratios[name]):.3f} |"
        )
    ok = {n: v for n, v in summary.items() if v[0] == len(seeds) and v[2] <= 0.05}
    best = min(ok, key=lambda n: ok[n][1]) if ok else None  # none before every seed ran
    lines += ["", f"Chosen on validation (candidates run on every seed, {len(seeds)}, within 0.05x): **{best}**."]
    lines += [
        "",
        "Per seed and request (RA, FA, VA and val MIA on the selection half; TA never read):",
        "",
        "| seed | candidate | request | RA | FA | VA (sel) | val MIA (sel) | TA | val gap to R | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        for at in AT:
            ref = retrain[seed][str(at)]
            lines.append(
                f"| {seed} | retrain | {at} | {100 * ref['retain_acc']:.1f} | {100 * ref['forget_acc']:.1f} | "
                f"{100 * ref['sel_val_acc']:.1f} | {100 * ref['sel_val_mia']:.1f} | {100 * ref['test_acc']:.1f} | | "
                f"{ref['seconds']:.1f} |"
            )
    for seed, name, at, r in sorted(rows, key=lambda t: (t[0], order(t[1]), t[2])):
        lines.append(
            f"| {seed} | {name} | {at} | {100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.1f} | "
            f"{100 * r['sel_val_acc']:.1f} | {100 * r['sel_val_mia']:.1f} | {100 * r['test_acc']:.1f} | "
            f"{gap(r, retrain[seed][str(at)]):.1f} | {r['seconds']:.2f} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")


def load(ck_path: str, cond_path: str):
    """The original (its checkpoint, with the data it was trained on, on the CPU) and the condensed file."""
    ck, data = open_checkpoint(ck_path, "data", False)
    return ck, data.to(torch.device("cpu")), read_condensed(cond_path)


def main() -> None:
    if sys.argv[1] == "report":
        report(Path(sys.argv[2]))
        return
    from dcforget.provenance import git_hash, machine

    ck_path, cond_path, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    code = git_hash()  # read before the run: the checkout may move on while it runs
    names = sys.argv[5:] or list(CANDS)
    rounds = {"round2": ROUND2, "round3": ROUND3, "round5": ROUND5}
    tag = next((t for t, r in rounds.items() if set(names) <= set(r)), "")
    if out.resolve().name in LATE:  # its own folder and candidates; round 6 retrains, later rounds read its retraining
        tag = out.resolve().name
        ALL.update(LATE[tag])
    out.mkdir(parents=True, exist_ok=True)
    ck, data, cond = load(ck_path, cond_path)
    dev = torch.device("cpu")
    n = len(data.train)
    g = generator(seed * 7919 + 2)
    forgotten = torch.zeros(n, dtype=torch.bool)
    reqs = []
    for c in range(CYCLES):
        left = torch.nonzero(~forgotten).flatten()
        chunk = left[torch.randperm(len(left), generator=g)[:SIZE]]
        p = out / "streams" / f"s{seed}-r{c + 1}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text("\n".join(map(str, sorted(chunk.tolist()))) + "\n")
        reqs.append((p, torch.nonzero(forgotten).flatten().tolist()))
        forgotten[chunk] = True
    retrain = {}
    if tag in RETRAINED:
        for at in AT:
            p, prev = reqs[at - 1]
            r = unlearn_request(
                ck.model, data, f"indices:{p}", "retrain", device=dev, seed=seed, quiet=True,
                previous_forget=prev, validation="halves",
            )  # fmt: skip
            retrain[str(at)] = figures(r.report)
            print("retrain", at, retrain[str(at)], flush=True)
    res = {}
    for name in names:
        m, per = ck.model, {}
        for c in range(CYCLES):
            p, prev = reqs[c]
            r = unlearn_request(
                m, data, f"indices:{p}", "condensed", device=dev, seed=seed, quiet=True, options=ALL[name],
                condensed=cond, previous_forget=prev, validation="halves",
            )  # fmt: skip
            m = r.model
            if c + 1 in AT:
                per[str(c + 1)] = {**figures(r.report), "profile": r.report.get("method_extra", {}).get("profile")}
                print(name, c + 1, per[str(c + 1)], flush=True)
        res[name] = per
    suffix = "" if tag in (*RETRAINED, *LATE) else f"-{tag}"
    (out / f"explore4-s{seed}{suffix}.json").write_text(
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
