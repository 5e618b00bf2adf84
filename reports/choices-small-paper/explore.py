"""Small-request exploration on VALIDATION figures: a stream of 10-image requests at DC-U's MLP settings, seed S.
Candidates of the default method vs retraining at requests 1 and 5; val gap = |dRA, dFA, dVA, dvalMIA|."""
import json, sys, time
from pathlib import Path
import torch
from dcforget.runtime import generator
from dcforget.condensed_store import read_condensed
from dcforget.checkpoint import open_checkpoint
from unlearn.request import unlearn_request

ck_path, cond_path, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
ck, data = open_checkpoint(ck_path, "data", False)
dev = torch.device("cpu")
data = data.to(dev)
cond = read_condensed(cond_path)
n = len(data.train)
g = generator(seed * 7919 + 1)
forgotten = torch.zeros(n, dtype=torch.bool)
reqs = []
for c in range(5):
    left = torch.nonzero(~forgotten).flatten()
    chunk = left[torch.randperm(len(left), generator=g)[:10]]
    p = out / f"s{seed}-r{c+1}.txt"; p.write_text("\n".join(map(str, sorted(chunk.tolist()))) + "\n")
    reqs.append((p, torch.nonzero(forgotten).flatten().tolist())); forgotten[chunk] = True
CANDS = {
    "none-s10-lr1e-4-nodsa": {"reset": "none", "steps": 10, "teacher": "clean", "lr": 1e-4, "dsa": False},
    "none-s20-lr3e-5-nodsa": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 3e-5, "dsa": False},
    "none-s20-lr1e-4-nodsa-d4": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 1e-4, "dsa": False, "distill": 4.0},
    "none-s20-lr1e-4-nodsa-fw4": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 1e-4, "dsa": False, "forget_weight": 4.0},
} if len(sys.argv) > 6 and sys.argv[6] == "b" else {
    "none-s20-lr1e-4-nodsa-q": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 1e-4, "dsa": False, "forget_match": "quantiles"},
    "none-s40-lr1e-4-nodsa-fw4": {"reset": "none", "steps": 40, "teacher": "clean", "lr": 1e-4, "dsa": False, "forget_weight": 4.0},
    "none-s20-lr3e-4-nodsa": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 3e-4, "dsa": False},
    "none-s20-lr3e-4-nodsa-fw4": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 3e-4, "dsa": False, "forget_weight": 4.0},
} if len(sys.argv) > 6 and sys.argv[6] == "c" else {
    "default": {},
    "none-s20-lr1e-3": {"reset": "none", "steps": 20, "teacher": "clean"},
    "none-s60-lr1e-3": {"reset": "none", "steps": 60, "teacher": "clean"},
    "none-s20-lr1e-4": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 1e-4},
    "none-s60-lr1e-4": {"reset": "none", "steps": 60, "teacher": "clean", "lr": 1e-4},
    "none-s20-lr1e-4-nodsa": {"reset": "none", "steps": 20, "teacher": "clean", "lr": 1e-4, "dsa": False},
}
K = ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia")
res = {}
def run(method, opts, c, model):
    p, prev = reqs[c]
    r = unlearn_request(model, data, f"indices:{p}", method, device=dev, seed=seed, quiet=True, options=opts,
                        condensed=cond, previous_forget=prev, validation="halves")
    rep = r.report
    sel = {"val_acc": rep.get("selection_val_acc"), "val_mia": rep.get("selection_val_mia")}
    return r.model, {**{k: rep[k] for k in K if k in rep}, **{"sel_" + k: v for k, v in sel.items()}, "seconds": rep["time"]["total_s"], "extra": {k: rep.get("method_extra", {}).get(k) for k in ("reset", "steps", "forget_tau")}}
mode = sys.argv[5]
if mode == "retrain":
    for c in (0, 4):
        _, res[f"retrain@{c+1}"] = run("retrain", {}, c, ck.model)
        print("retrain", c + 1, res[f"retrain@{c+1}"], flush=True)
for name, o in (CANDS.items() if mode == "cands" else []):
    m = ck.model
    for c in range(5):
        m, r = run("condensed", o, c, m)
        if c in (0, 4):
            res[f"{name}@{c+1}"] = r
            print(name, c + 1, r, flush=True)
(out / f"explore-{mode}{''.join(sys.argv[6:])}-s{seed}.json").write_text(json.dumps(res, indent=1))
