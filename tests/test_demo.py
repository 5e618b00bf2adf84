"""The newcomer's first run, `unlearn demo`, at a tiny size: one command trains, condenses, forgets with the
default method and with retraining, attacks both and writes a report with a table and pictures."""

import json

from click.testing import CliRunner

from experiments.cli import unlearn_main


def test_demo_writes_a_report_with_table_and_pictures(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(
        unlearn_main, ["demo", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert "retrain " in res.output and "condensed " in res.output and "time 1.00x" in res.output
    md = (out / "report.md").read_text()
    assert "original CNN" not in md  # the text names no architecture the preset may not use (smoke's is an MLP)
    assert "| cnn |" not in md and "| mlp | random:0.1 | retrain |" in md and "| mlp | random:0.1 | condensed |" in md
    assert "![condensed set](figures/condensed.png)" in md and (out / "figures" / "condensed.png").stat().st_size > 0
    assert "![first-request](figures/first-request.png)" in md  # the ROC curves (matplotlib is in the test extra)
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["command"].startswith("unlearn demo") and meta["git"] and meta["cells_missing"] == []
    again = CliRunner().invoke(
        unlearn_main, ["demo", "--preset", "smoke", "--out", str(out), "--device", "cpu", "--quiet"]
    )
    assert again.exit_code == 0
    assert json.loads((out / "report.json").read_text())["meta"]["cells_read_back"] == 2


def test_demo_refuses_an_output_that_is_a_file(tmp_path):
    target = tmp_path / "f"
    target.write_text("keep")
    res = CliRunner().invoke(unlearn_main, ["demo", "--preset", "smoke", "--out", str(target)])
    assert res.exit_code == 2 and res.output.startswith("error: ") and target.read_text() == "keep"
