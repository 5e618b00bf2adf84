"""The benchmark scripts run end to end on generated data and write JSON that names its command, code and machine."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_unlearn_bench_writes_provenance_and_keys_its_cache_by_settings(tmp_path):
    out, work = tmp_path / "bench.json", tmp_path / "work"
    cmd = [sys.executable, str(ROOT / "bench" / "unlearn_bench.py"), "--dataset",
           "synthetic:classes=4,train=40,test=20,size=16,noise=0.5", "--per-class", "40", "--clusters", "4",
           "--epochs", "1", "--seeds", "1", "--device", "cpu", "--forget", "random:0.1", "--methods", "condensed", "--work", str(work),
           "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    saved = json.loads(out.read_text())
    meta = saved["meta"]
    assert meta["git"] != "" and "CPU" in meta["machine"] and meta["seeds"] == [0]
    assert "--methods condensed" in meta["command"] and meta["settings"]["bf16"] in (True, False)  # "auto" resolved
    assert [r["method"] for r in saved["rows"]] == ["retrain", "condensed"]
    first = sorted(p.name for p in work.iterdir())
    assert len(first) == 1 and (work / first[0] / "original.pt").exists()
    # another cap is another set of artefacts, never the cached original of the first
    res = subprocess.run([*cmd[:5], "30", *cmd[6:]], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(list(work.iterdir())) == 2
