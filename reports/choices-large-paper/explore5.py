"""A probe, not a choice: would keeping the model whole (the small-request rule) serve a random-10% request at
DC-U's MLP settings better than the per-sample rule? VALIDATION figures (selection half).

At DC-U's MLP settings (the paper preset's 42,500 training images, FDM K=450 per class) the default's per-sample
rule (a partial reset of the whole MLP, then 6 epochs on the reduced set with DSA, distillation and the bounded
forget ascent) leaves retain accuracy far under retraining's on a random-10% request (reports/default-dcu-mlp). The
small-request rule keeps the model whole and trains a few steps with the per-example forget target; on the
100-image stream it held RA at retraining's or over it. ``small_request`` = 1 makes any request small, so the rule's
upper anchor runs (``small_steps_upper`` steps at ``small_lr_upper``, ``small_forget_batch_upper`` forget images a
step, the per-example target at tau 1).

Candidates: the registered rule; ``keep`` (small_request 1: 100 steps at 3e-4, 64 forget images a step); ``keep-s300``
(300 steps); ``keep-s300-fb256`` (and 256 forget images a step: 4,250 forget images get few pushes at 64);
``keep-s300-lr1e-3`` (and a rate of 1e-3).

Setting: each seed S's original and condensed file are the 100-image stream's (reports/stream-100-paper's
artefacts: even batches, one original per seed); the request is ``random:0.1`` drawn with seed S (the draw is the
same for retraining and every candidate of the seed); retraining of the same request is run here.

Criterion, fixed before the run: the smallest mean over seeds of the val gap to retraining (the Euclidean distance in
points on RA, FA, selection-half VA and selection-half val MIA) among candidates within 0.1x retraining's time on
every seed (issue #33's large-request bound). A probe: its outcome is reported, and nothing is adopted from it
here (turning the small-request rule on for large requests changes every table with a large request).

Round 2 (session 32, in OUT/round2; written after round 1, whose forced candidates held RA at retraining's and left
FA 28-40 points over it): the loss hinge barely moves a confidently memorised image (its cross-entropy gradient
vanishes as p -> 1), and 4,250 such images are what a random-10% request must move. ``forget_push=confidence``
(the per-example hinge on the logit-scaled confidence, whose gradient does not vanish) with the model kept whole,
150 steps (``small_steps_upper``) and 256 forget images a step (``small_forget_batch_upper``):
``conf-w0.3`` (``forget_weight`` 0.3, rate 3e-4), ``conf-w1`` (weight 1, 3e-4), ``conf-w1-lr1e-3`` (weight 1,
rate 1e-3), ``conf-w3-lr1e-3`` (weight 3, 1e-3), ``rank-conf-w1-lr1e-3`` (the ``rank`` target: each image keeps
its loss rank among trained images, moved onto the never-seen losses), beside the registered ``rule``.
Round 2's criterion, fixed before it ran: round 1's (the smallest mean val gap within 0.1x on every seed), and a
candidate is a lead for the large-request rule only if its mean val gap is also under the registered rule's in the
same round; a lead is checked on the cpu preset and on the test split before anything is adopted.

Round 3 (session 32, in OUT/round3; written after round 2, whose ``conf-w1-lr1e-3`` (B below) brought FA to
retraining's on every seed at 0.08x with a mean val gap of 8.9 against the rule's 16.1, but left RA about 6 points
under retraining's and the val MIA about 6 over): the retain side, with B's forgetting unchanged: ``B`` (rerun),
``B-lw1`` (the labels at weight 1, ``small_label_weight_upper``; 0.5 in B), ``B-hinge-lw1`` (``small_labels=hinge``
at weight 1: the labels repair what the push disturbs), ``B-d3`` (``distill`` 3), ``B-lw1-d3`` (both), beside the
registered ``rule``. Criterion, fixed before it ran: round 2's; a lead if under the rule's mean val gap and B's in
the same round.

Round 4 (session 32, in OUT/round4; written after round 3, whose ``B-lw1`` came out smallest, 8.4 against B's 8.9,
with FA near retraining's but RA about 5 points under it and the val MIA about 6 over: the correctly classified
forget images keep a memorised confidence, since each image is pushed to its own level only a few times; what keeps
RA (more distillation) keeps FA too): the batch's confidences moved onto the never-seen distribution as a whole,
``forget_match=quantiles`` with ``forget_push=confidence`` (the batch's sorted logit-scaled confidences onto those of
the validation losses' quantiles), at ``forget_weight`` 0.3, 1 and 3 (``Q-lw1-w0.3``, ``Q-lw1``, ``Q-lw1-w3``), on
B-lw1's settings, beside ``B-lw1`` (rerun) and the registered ``rule``. Criterion, fixed before it ran: round 2's; a
lead if under the rule's mean val gap and B-lw1's in the same round.

Round 5 (session 33, in OUT/round5; written after round 4, whose B-lw1 stayed closest, and after `condensed` gained
``large_request=keep``: B-lw1's rule for any large per-sample request, with its budget stated per new forget image,
``ceil(large_pushes * new / large_forget_batch)`` steps): ``keep-p4``, ``keep-p6``, ``keep-p9``, ``keep-p13``
(``large_pushes`` 4, 6, 9, 13) beside the registered ``rule`` and ``B-lw1`` (rerun). ``keep-p9`` runs B-lw1's exact
settings (9 x 4,250 / 256 -> 150 steps): a parity check of the new option. The same budgets run on the choices
suite's cpu preset (configs/experiments/choices/12-default-explore-large.toml, MLP and CNN) and on the demo's
original (13-default-explore-large-demo.toml). Criterion across the four settings, fixed before the run (README.md,
round 5): P* is the budget with the smallest average over the four settings of its mean val gap to retraining;
``large_request=keep`` at P* becomes the registered default only if that average is under the rule's, its mean val
gap is under the rule's on at least three of the four settings, and its largest time / R is at or under the rule's
on every setting.

Usage: python explore5.py CHECKPOINT CONDENSED SEED OUT [CANDIDATE ...]
       python explore5.py report OUT  (writes OUT/report.md from OUT/explore5-*.json)
       python explore5.py cross OUT SUITE  (round 5: writes OUT/cross.md from OUT and SUITE/report.json)
"""

import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "choices-stream100-paper"))
from explore4 import figures, gap, load  # noqa: E402  (the val gap, figures and loading of the stream rounds)

CANDS = {
    "rule": {},
    "keep": {"small_request": 1.0},
    "keep-s300": {"small_request": 1.0, "small_steps_upper": 300},
    "keep-s300-fb256": {"small_request": 1.0, "small_steps_upper": 300, "small_forget_batch_upper": 256},
    "keep-s300-lr1e-3": {"small_request": 1.0, "small_steps_upper": 300, "small_lr_upper": 1e-3},
}
_CONF = {"small_request": 1.0, "small_steps_upper": 150, "small_forget_batch_upper": 256, "forget_push": "confidence"}
_CONF |= {"small_labels": "fit", "small_label_weight_upper": 0.5}  # the label rule rounds 2-4 ran under (until 5c06949)
ROUND2 = {
    "rule": {},
    "conf-w0.3": {**_CONF, "forget_weight": 0.3},
    "conf-w1": {**_CONF, "forget_weight": 1.0},
    "conf-w1-lr1e-3": {**_CONF, "forget_weight": 1.0, "small_lr_upper": 1e-3},
    "conf-w3-lr1e-3": {**_CONF, "forget_weight": 3.0, "small_lr_upper": 1e-3},
    "rank-conf-w1-lr1e-3": {**_CONF, "forget_weight": 1.0, "small_lr_upper": 1e-3, "forget_match": "rank"},
}
_B = {**_CONF, "forget_weight": 1.0, "small_lr_upper": 1e-3}  # round 2's closest
ROUND3 = {
    "rule": {},
    "B": _B,
    "B-lw1": {**_B, "small_label_weight_upper": 1.0},
    "B-hinge-lw1": {**_B, "small_labels": "hinge", "small_label_weight_upper": 1.0},
    "B-d3": {**_B, "distill": 3.0},
    "B-lw1-d3": {**_B, "small_label_weight_upper": 1.0, "distill": 3.0},
}
_BL = {**_B, "small_label_weight_upper": 1.0}  # round 3's closest
_Q = {**_BL, "forget_match": "quantiles"}
ROUND4 = {
    "rule": {},
    "B-lw1": _BL,
    "Q-lw1-w0.3": {**_Q, "forget_weight": 0.3},
    "Q-lw1": _Q,
    "Q-lw1-w3": {**_Q, "forget_weight": 3.0},
}
ROUND5 = {"rule": {}, "B-lw1": _BL} | {
    f"keep-p{p}": {"large_request": "keep", "large_pushes": float(p)} for p in (4, 6, 9, 13)
}
ROUNDS = {"round2": ROUND2, "round3": ROUND3, "round4": ROUND4, "round5": ROUND5}  # a round's folder -> its candidates
REFERENCES = {"round3": "B", "round4": "B-lw1", "round5": "B-lw1"}  # a round's earlier closest, rerun beside it
SPEC = "random:0.1"


def report(out: Path) -> None:
    runs = [json.loads(f.read_text()) for f in sorted(out.glob("explore5-s*.json"))]
    cands = ROUNDS.get(out.resolve().name, CANDS)
    lines = [
        "# Random 10% at DC-U's MLP settings: the small-request rule as a probe, on validation",
        "",
        f"Generated by `python reports/choices-large-paper/explore5.py report {out.as_posix()}` from the JSON files",
        "beside it; each names its command, commit, machine and seed. What is compared and the criterion (fixed",
        "before the run) are in explore5.py's docstring. A seed varies the original (initialisation and data order)",
        "with its condensed file, the request's draw and the methods' randomness. val gap to R: the Euclidean",
        "distance in points to retraining of the same seed on RA, FA, selection-half VA and selection-half val MIA;",
        "TA and MIA (test split) are shown, never read. time / R: the request's seconds over retraining's in the same",
        "invocation (each file ran alone on the machine).",
        "",
    ]
    lines += [f"- `explore5-s{d['seed']}.json`: `{d['command']}` at {d['git']}, {d['machine']}" for d in runs]
    lines += ["", "| candidate | seeds | val gap to R | time / R (max) |", "|---|---|---|---|"]
    summary = {}
    for name in cands:
        per = [(gap(d["candidates"][name], d["retrain"]), d["candidates"][name]["seconds"] / d["retrain"]["seconds"])
               for d in runs if name in d["candidates"]]  # fmt: skip
        if not per:
            continue
        gaps = [g for g, _ in per]
        cell = f"{statistics.fmean(gaps):.1f} ± {statistics.stdev(gaps):.1f}" if len(gaps) > 1 else f"{gaps[0]:.1f}"
        summary[name] = (len(per), statistics.fmean(gaps), max(r for _, r in per))
        lines.append(f"| {name} | {len(per)} | {cell} | {summary[name][2]:.3f} |")
    ok = {n: v for n, v in summary.items() if v[0] == len(runs) and v[2] <= 0.1}
    best = min(ok, key=lambda n: ok[n][1]) if ok else None
    if out.resolve().name == "round5":  # its criterion reads four settings
        lines += ["", "Round 5's criterion reads four settings: [cross.md](cross.md)."]
    else:
        lines += ["", f"Smallest by the criterion (within 0.1x on every seed): **{best}** (a probe: nothing adopted)."]
    if (
        out.resolve().name != "round5" and best is not None and best != "rule" and "rule" in summary
    ):  # round 2 on: a lead only if under the rule's gap
        earlier = REFERENCES.get(out.resolve().name, "")  # round 3 on: and under the earlier closest's
        if best == earlier:
            lines.append(f"The earlier closest ({earlier}) stays the smallest: no new lead.")
        else:
            refs = [n for n in ("rule", earlier) if n in summary]
            lead = all(summary[best][1] < summary[n][1] for n in refs)
            under = " and ".join(f"{n}'s ({summary[n][1]:.1f})" for n in refs)
            lines.append(f"Under the mean val gap of {under}: {'yes, a lead' if lead else 'no'}.")
    lines += [
        "",
        "| seed | candidate | RA | FA | VA (sel) | val MIA (sel) | TA | MIA | val gap to R | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in runs:
        rows = [("retrain", d["retrain"])] + [(n, r) for n, r in d["candidates"].items()]
        for name, r in rows:
            g = "" if name == "retrain" else f"{gap(r, d['retrain']):.1f}"
            lines.append(
                f"| {d['seed']} | {name} | {100 * r['retain_acc']:.1f} | {100 * r['forget_acc']:.1f} | "
                f"{100 * r['sel_val_acc']:.1f} | {100 * r['sel_val_mia']:.1f} | {100 * r['test_acc']:.1f} | "
                f"{100 * r['mia']:.1f} | {g} | {r['seconds']:.1f} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n")


CROSS_NAMES = {"rule": "condensed"} | {f"keep-p{p}": f"large-keep,p={p}" for p in (4, 6, 9, 13)}  # round 5 -> suite


def cross(out: Path, suite: Path) -> None:
    """Round 5's criterion across its four settings (README.md, round 5): DC-U's MLP settings (OUT's JSON files) and
    the choices suite's cpu MLP, cpu CNN and demo CNN (SUITE's report.json, experiments default-explore-large and
    default-explore-large-demo); writes OUT/cross.md."""
    runs = [json.loads(f.read_text()) for f in sorted(out.glob("explore5-s*.json"))]
    rep = json.loads((suite / "report.json").read_text())
    per = {name: {} for name in CROSS_NAMES}  # candidate -> setting -> (gaps, time ratios)
    for name in CROSS_NAMES:
        pairs = [(gap(d["candidates"][name], d["retrain"]), d["candidates"][name]["seconds"] / d["retrain"]["seconds"])
                 for d in runs]  # fmt: skip
        per[name]["DC-U MLP (paper)"] = ([g for g, _ in pairs], [r for _, r in pairs])
    settings = [("default-explore-large", "mlp", "cpu MLP"), ("default-explore-large", "cnn", "cpu CNN"),
                ("default-explore-large-demo", "cnn", "demo CNN")]  # fmt: skip
    rows = {(r["experiment"], r["model"], r["method"]): r for r in rep["rows"]}
    for exp, model, label in settings:
        cells = [c for c in rep["cells"][exp] if c["key"]["model"] == model]
        base = {c["seed"]: c["result"]["seconds"] for c in cells if c["key"]["method"] == "retrain"}
        for name, method in CROSS_NAMES.items():
            mine = sorted((c for c in cells if c["key"]["method"] == method), key=lambda c: c["seed"])
            gap_mean = rows[(exp, model, method)]["val_gap"]
            ratios = [c["result"]["seconds"] / base[c["seed"]] for c in mine]
            per[name][label] = ([gap_mean], ratios)  # the suite's row holds the mean over seeds of the val gap
    labels = list(per["rule"])
    mean = {n: {s: statistics.fmean(per[n][s][0]) for s in labels} for n in per}
    worst = {n: {s: max(per[n][s][1]) for s in labels} for n in per}
    avg = {n: statistics.fmean(mean[n].values()) for n in per}
    budgets = [n for n in per if n != "rule"]
    best = min(budgets, key=lambda n: avg[n])
    wins = sum(mean[best][s] < mean["rule"][s] for s in labels)
    faster = all(worst[best][s] <= worst["rule"][s] for s in labels)
    adopt = avg[best] < avg["rule"] and wins >= 3 and faster
    lines = [
        "# Round 5 across four settings: the kept-whole rule's budget, and whether it becomes the default",
        "",
        f"Generated by `python reports/choices-large-paper/explore5.py cross {out.as_posix()} {suite.as_posix()}` from",
        f"the JSON files beside it (DC-U's MLP settings) and {suite.as_posix()}/report.json (the choices suite's cpu",
        f"preset and the demo's original; `{rep['meta']['command']}` at {rep['meta']['git']}, {rep['meta']['machine']}).",
        "Validation figures only: each cell is the mean over seeds 0-2 of the val gap to retraining of the same seed",
        "(points), with the largest time / R over the seeds. The criterion, fixed before the run: README.md, round 5.",
        "",
        "| candidate | " + " | ".join(labels) + " | average |",
        "|---|" + "---|" * (len(labels) + 1),
    ]
    for n in per:
        cells = " | ".join(f"{mean[n][s]:.1f} ({worst[n][s]:.3f}x)" for s in labels)
        lines.append(f"| {n} | {cells} | {avg[n]:.1f} |")
    lines += [
        "",
        f"P* (the smallest average): **{best}** ({avg[best]:.1f}; the rule: {avg['rule']:.1f}); under the rule's mean",
        f"val gap on {wins} of {len(labels)} settings; its largest time / R at or under the rule's on every setting:",
        f"{'yes' if faster else 'no'}. **{'Adopted' if adopt else 'Not adopted'}** as the registered default.",
    ]
    (out / "cross.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1] == "report":
        report(Path(sys.argv[2]))
        return
    if sys.argv[1] == "cross":
        cross(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    from dcforget.provenance import git_hash, machine
    from unlearn.request import unlearn_request

    seed, out = int(sys.argv[3]), Path(sys.argv[4])
    code = git_hash()  # read before the run: the checkout may move on while it runs
    out.mkdir(parents=True, exist_ok=True)
    ck, data, cond = load(sys.argv[1], sys.argv[2])
    run = dict(device=torch.device("cpu"), seed=seed, quiet=True, validation="halves")
    retrain = figures(unlearn_request(ck.model, data, SPEC, "retrain", **run).report)
    print("retrain", retrain, flush=True)
    res = {}
    cands = ROUNDS.get(out.resolve().name, CANDS)
    for name in sys.argv[5:] or list(cands):
        r = unlearn_request(ck.model, data, SPEC, "condensed", options=cands[name], condensed=cond, **run)
        res[name] = {**figures(r.report), "profile": r.report.get("method_extra", {}).get("profile")}
        print(name, res[name], flush=True)
    record = {"command": "python " + " ".join(sys.argv), "git": code, "machine": machine(), "seed": seed,
              "retrain": retrain, "candidates": res}  # fmt: skip
    (out / f"explore5-s{seed}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
