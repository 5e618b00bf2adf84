"""Stream drift on VALIDATION figures: 20 successive 10-image requests at DC-U's MLP settings, seed S; candidates of
the small-request rule; retraining at requests 10 and 20 (selection-half VA / val MIA)."""
import json, sys
from pathlib import Path
import torch
import unlearn.methods.condensed as cm
from dcforget.runtime import generator
from dcforget.condensed_store import read_condensed
from dcforget.checkpoint import open_checkpoint
from unlearn.request import unlearn_request

ck_path, cond_path, seed, out, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
ck, data = open_checkpoint(ck_path, "data", False)
dev = torch.device("cpu"); data = data.to(dev); cond = read_condensed(cond_path)
n = len(data.train); g = generator(seed * 7919 + 1)
forgotten = torch.zeros(n, dtype=torch.bool); reqs = []
for c in range(20):
    left = torch.nonzero(~forgotten).flatten(); chunk = left[torch.randperm(len(left), generator=g)[:10]]
    p = out / f"s{seed}-r{c+1}.txt"; p.write_text("\n".join(map(str, sorted(chunk.tolist()))) + "\n")
    reqs.append((p, torch.nonzero(forgotten).flatten().tolist())); forgotten[chunk] = True
real_fit = cm.fit
def fit_ce_off(model, x, y, cfg, **kw):
    kw.pop("sample_weights", None)
    return real_fit(model, x, y, cfg, loss_fn=lambda logits, yb, xb: 0.0 * logits.sum(), **kw)
CANDS = {
    "rule": ({}, False),
    "rule-fw1": ({"small_forget_weight": 1.0}, False),
    "rule-s20": ({"small_steps": 20}, False),
    "rule-ce-off": ({}, True),
}
K = ("retain_acc", "forget_acc", "test_acc", "mia")
def run(method, opts, c, model):
    p, prev = reqs[c]
    r = unlearn_request(model, data, f"indices:{p}", method, device=dev, seed=seed, quiet=True, options=opts,
                        condensed=cond, previous_forget=prev, validation="halves")
    rep = r.report
    return r.model, {**{k: rep[k] for k in K}, "sel_val_acc": rep.get("selection_val_acc"), "sel_val_mia": rep.get("selection_val_mia"), "seconds": rep["time"]["total_s"]}
res = {}
if mode == "retrain":
    for c in (9, 19):
        _, res[f"retrain@{c+1}"] = run("retrain", {}, c, ck.model); print("retrain", c + 1, res[f"retrain@{c+1}"], flush=True)
else:
    for name, (o, ce_off) in CANDS.items():
        cm.fit = fit_ce_off if ce_off else real_fit
        m = ck.model
        for c in range(20):
            m, r = run("condensed", o, c, m)
            if c + 1 in (1, 5, 10, 20):
                res[f"{name}@{c+1}"] = r; print(name, c + 1, r, flush=True)
    cm.fit = real_fit
(out / f"explore2-{mode}-s{seed}.json").write_text(json.dumps(res, indent=1))
