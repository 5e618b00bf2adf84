"""Results tables are generated from committed reports, never typed: every generated block in the README (and the
docs) equals what `experiments report` renders now, and the command refuses what it cannot render."""

import json
from pathlib import Path

from click.testing import CliRunner

from experiments.cli import main as experiments
from experiments.tables import BLOCK, refresh_blocks, render

ROOT = Path(__file__).resolve().parents[1]
GENERATED = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_generated_block_matches_its_report():
    blocks = 0
    for f in GENERATED:
        text = f.read_text()
        blocks += len(BLOCK.findall(text))
        assert refresh_blocks(text, ROOT) == text, f"{f}: run `experiments report --refresh {f.relative_to(ROOT)}`"
    assert blocks >= 4  # the README's leaderboards, summary and tuned table


def _report(tmp_path):
    rows = [
        {"experiment": "e", "method": "retrain", "retain_acc": 100.0, "seeds": 1},
        {"experiment": "e", "method": "b", "avg_rank": 2.0, "retain_acc": 50.0, "seeds": 1},
        {"experiment": "e", "method": "a", "avg_rank": 1.0, "retain_acc": 90.0, "seeds": 1},
        {"experiment": "e", "method": "w", "avg_rank_du": 0.5, "degenerate": "s0: RA 9 <= chance + 5", "seeds": 1},
    ]
    meta = {
        "command": "experiments reproduce benchmark",
        "git": "abc",
        "seeds": 1,
        "finished_utc": "t",
        "claims": {"e": [{"claim": "c", "ranking": "du", "confirmed": True}]},
    }
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    return tmp_path / "r"


def test_a_leaderboard_ranks_by_average_rank_and_lists_degenerate_methods_last(tmp_path):
    md = render(_report(tmp_path), "e")
    body = [line for line in md.splitlines() if line.startswith("| ") and "method" not in line]
    assert [line.split("|")[2].strip() for line in body] == ["retrain (reference)", "`a`", "`b`", "`w`"]
    assert body[1].split("|")[1].strip() == "1" and body[3].split("|")[1].strip() == ""  # w is not ranked
    assert "abc" in md.splitlines()[0]  # the source line names the commit


def test_refresh_check_fails_on_a_stale_block_and_refresh_fixes_it(tmp_path, monkeypatch):
    rep = _report(tmp_path)
    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "doc.md"
    doc.write_text("text\n<!-- experiments report r --table summary -->\n| stale |\n<!-- end -->\n")
    res = CliRunner().invoke(experiments, ["report", "--refresh", str(doc), "--check"])
    assert res.exit_code == 1 and "1 of 1 file(s) out of date" in res.output
    assert "| stale |" in doc.read_text()
    res = CliRunner().invoke(experiments, ["report", "--refresh", str(doc)])
    assert (
        res.exit_code == 0
        and "| stale |" not in doc.read_text()
        and "| e | 2 | 1 | `a` 1.0, `b` 2.0 |" in doc.read_text()
    )
    assert CliRunner().invoke(experiments, ["report", "--refresh", str(doc), "--check"]).exit_code == 0
    assert rep.is_dir()


def test_the_summary_names_each_claim_once_with_its_verdict_on_each_ranking():
    from experiments.tables import _claim_verdicts

    claim = {"claim": "c", "confirmed": False, "verdict": "not confirmed"}
    both = [{**claim, "ranking": "du"}, {**claim, "ranking": "toolkit", "verdict": "confirmed", "confirmed": True}]
    assert (
        _claim_verdicts(both)
        == "c: not confirmed on Deep Unlearn's ranking, confirmed on the toolkit's (degenerate models left out)"
    )
    assert (
        _claim_verdicts([{**claim, "ranking": "du"}, {**claim, "ranking": "toolkit"}])
        == "c: not confirmed (both rankings)"
    )
    text = render(ROOT / "reports/benchmark-cpu", "summary")
    for line in (ln for ln in text.splitlines() if ln.startswith("| ") and "experiment" not in ln):
        claims = [part.split(": ")[0] for part in line.split(" | ")[-1].rstrip(" |").split("; ") if part]
        assert len(claims) == len(set(claims)), line


def test_a_targets_block_states_the_targets_from_the_report_itself():
    """The targets table bolds the cells that miss: the block carries the sentence saying what the targets are,
    taken from the report's own Markdown (the text between the section's heading and its table)."""
    md = (ROOT / "reports/targets-cpu/report.md").read_text()
    section = md.split("\n## ", 2)[1]
    prose = section.split("\n\n", 1)[1].split("\n| ", 1)[0].strip()
    assert "Targets of" in prose and "bold" in prose
    assert prose in render(ROOT / "reports/targets-cpu", "default")


def test_report_refuses_what_it_cannot_render(tmp_path):
    rep = _report(tmp_path)
    for args, why in [
        ([str(rep), "--table", "nope"], "no table 'nope'"),
        ([str(tmp_path)], "is not a report"),
        (["--check"], "--check goes with --refresh"),
    ]:
        if args == [str(tmp_path)]:
            (tmp_path / "report.json").write_text("[1]")
        res = CliRunner().invoke(experiments, ["report", *args])
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and why in res.stderr, res.output


def test_tune_suite_lists_what_the_benchmark_runs_and_every_pair_has_its_tuned_file():
    """`experiments tune --suite benchmark` (which replaced scripts/tune-cpu.sh) reads the methods from the suite's
    files: at the cpu preset the pairs it would tune are exactly the committed tuned files of CIFAR-10's MLP."""
    from dcforget.forget import ForgetSpec
    from experiments.runner import suite_tuning
    from unlearn.tuned import tuned_filename

    pairs = suite_tuning("benchmark", "cpu", "cifar10", "mlp")
    assert ("unsir", "class:2") in pairs and ("unsir", "random:0.1") not in pairs  # class-only
    assert ("ssd", "class:2") in pairs and ("finetune", "class:2") not in pairs  # tune_class lists ssd only
    names = {tuned_filename(m, ForgetSpec.parse(f)) for m, f in pairs}
    assert names == {p.name for p in (ROOT / "configs/tuned/cpu/cifar10-mlp").glob("*.json")}


def test_tune_suite_skips_existing_files_and_refuses_contradictions(tmp_path):
    out = tmp_path / "tuned"
    out.mkdir()
    for m, f in [
        ("ssd", "ssd.class.json"),
        ("unsir", "unsir.class.json"),
        ("lfssd", "lfssd.class.json"),
        ("lrp-npp", "lrp-npp.class.json"),
    ]:
        (out / f).write_text("{}")
    before = {p.name: p.read_text() for p in out.iterdir()}
    res = CliRunner().invoke(
        experiments,
        [
            "tune",
            "cifar10",
            "--suite",
            "benchmark",
            "--model",
            "cnn",
            "--preset",
            "cpu",
            "--skip-existing",
            "--out",
            str(out),
            "--store",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stderr.count("skip ") == 4 and {p.name: p.read_text() for p in out.iterdir()} == before
    for args, why in [
        (["--suite", "benchmark", "--method", "kde"], "not both"),
        ([], "give --method or --suite"),
        (["--suite", "benchmark", "--forget", "class:1"], "--forget goes with --method"),
        (["--method", "kde", "--skip-existing", "--force"], "contradict"),
    ]:
        res = CliRunner().invoke(experiments, ["tune", "cifar10", *args, "--out", str(out)])
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and why in res.stderr, res.output


def test_a_policy_table_pairs_retain_sources_and_joins_a_ulira_report(tmp_path):
    """A leaderboard whose rows are a policy search's candidates renders by RetDev with each row's retain source
    ("none read" for a method that reads none), RTE and the Pareto front; `--ulira` joins an `attacks ulira` report of
    some of the rows as an AUC column (retraining's beside), and refuses one that attacks something else."""
    pol = {"tuned": "policy (validation)", "seeds": 1, "experiment": "p"}
    rows = [
        {"experiment": "p", "method": "retrain", "retention_deviation": 0.0, "rte": 1.0, "seeds": 1},
        {**pol, "method": "kde (reduced)", "retain_source": "reduced", "retention_deviation": 0.3, "rte": 9.0},
        {**pol, "method": "kde (full)", "retain_source": "full", "retention_deviation": 0.1, "rte": 2.0},
        {**pol, "method": "condensed (full)", "retention_deviation": 0.2, "rte": 5.0, "pareto": "front"},
    ]
    meta = {"command": "experiments reproduce benchmark", "git": "abc", "seeds": 1, "finished_utc": "t"}
    meta["claims"] = {"p": []}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    ci = {"auc": 0.7, "auc_ci": [0.65, 0.75]}
    ul = {"meta": {"command": "attacks ulira", "git": "def"}, "attacks": {"retrained": ci, "kde (full)": ci}}
    ul["setup"] = {"dataset": "cifar10", "arch": "mlp"}
    (tmp_path / "u.json").write_text(json.dumps(ul))
    text = render(tmp_path / "r", "p", ulira=str(tmp_path / "u.json"))
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in lines[1:]] == [
        "| retrain (reference)",
        "| `kde (full)`",
        "| `condensed (full)`",
        "| `kde (reduced)`",
    ]
    assert "| full |" in lines[2] and "| none read |" in lines[3] and "| front |" in lines[3]
    assert lines[2].endswith("0.700 [0.650, 0.750] |") and lines[1].endswith("0.700 [0.650, 0.750] |")
    assert "attacks ulira" in text  # the joined report's source line
    (tmp_path / "v.json").write_text(json.dumps({**ul, "attacks": {"ssd (full)": ci}}))
    res = CliRunner().invoke(
        experiments, ["report", str(tmp_path / "r"), "--table", "p", "--ulira", str(tmp_path / "v.json")]
    )
    assert res.exit_code == 2 and "not rows of 'p'" in res.output
    for r in rows:  # a class table: a U-LiRA report of random forgetting does not join it
        r["forget"] = "class:2"
    (tmp_path / "r" / "report.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    res = CliRunner().invoke(
        experiments, ["report", str(tmp_path / "r"), "--table", "p", "--ulira", str(tmp_path / "u.json")]
    )
    assert res.exit_code == 2 and "forgets whole classes" in res.output
    res = CliRunner().invoke(experiments, ["report", str(tmp_path / "r"), "--ulira", str(tmp_path / "u.json")])
    assert res.exit_code == 2 and "give --table too" in res.output


def test_a_generated_block_joins_a_ulira_report_by_its_relative_path(tmp_path):
    rows = [
        {"experiment": "p", "method": "retrain", "retention_deviation": 0.0, "rte": 1.0, "seeds": 1, "model": "mlp"},
        {"experiment": "p", "method": "kde (full)", "tuned": "policy (validation)", "seeds": 1, "model": "mlp"},
    ]
    meta = {"command": "experiments reproduce benchmark", "git": "abc", "seeds": 1, "finished_utc": "t"}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(json.dumps({"meta": {**meta, "claims": {"p": []}}, "rows": rows}))
    (tmp_path / "u").mkdir()
    ul = {"meta": {"command": "attacks ulira", "git": "def"}, "setup": {"dataset": "cifar10", "arch": "mlp"}}
    ul["attacks"] = {"kde (full)": {"auc": 0.6, "auc_ci": [0.5, 0.7]}}
    (tmp_path / "u" / "report.json").write_text(json.dumps(ul))
    text = refresh_blocks("<!-- experiments report r --table p --ulira u/report.json -->\n<!-- end -->", tmp_path)
    assert "From [`u`](u/report.json): `attacks ulira`" in text and str(tmp_path) not in text
    assert "0.600 [0.500, 0.700]" in text


def test_a_ulira_report_of_another_name_is_linked_as_itself_and_reaches_the_site(tmp_path):
    """`attacks ulira --out DIR/NAME.json`: its block links that file (not DIR/NAME.json/report.json), and the site
    carries it (a JSON report of a folder without a Markdown page)."""
    from experiments.docgen import report_assets

    (tmp_path / "reports" / "sel").mkdir(parents=True)
    ul = {"meta": {"command": "attacks ulira", "git": "def"}, "setup": {}, "attacks": {"x": {"auc": 0.6}}}
    (tmp_path / "reports" / "sel" / "a.json").write_text(json.dumps(ul))
    text = refresh_blocks("<!-- experiments report reports/sel/a.json -->\n<!-- end -->", tmp_path)
    assert "From [`reports/sel/a.json`](reports/sel/a.json)" in text
    assert ("reports/sel/a.json", tmp_path / "reports" / "sel" / "a.json") in report_assets(tmp_path)


def test_a_ulira_table_shows_the_diagnosis_where_the_report_has_one():
    """Reports with a diagnosis get shift / spread / corr columns; older reports keep the five columns."""
    from experiments.tables import ulira_table

    diag = {"shift": 0.771, "spread": 1.561, "mean_correlation": 0.829}
    new = ulira_table({"attacks": {"condensed": {"auc": 0.7, "diagnosis": diag}, "retrained": {"auc": 0.5}}})
    assert "| shift | spread | corr |" in new and "| +0.77 | 1.56 | 0.83 |" in new
    assert new.splitlines()[-1].endswith("|  |  |  |")  # a variant without one: blank cells, not an error
    old = ulira_table({"attacks": {"condensed": {"auc": 0.7}}})
    assert "shift" not in old and old.splitlines()[-2].count("|") == 6


def test_a_source_line_names_the_run_that_computed_a_report_only_reports_cells(tmp_path):
    from experiments.tables import source_line

    meta = {"command": "experiments reproduce benchmark --preset cpu --out R --report-only", "git": "b" * 40}
    run = {"id": "1", "command": "experiments reproduce benchmark --preset cpu --out R", "git": "a" * 40}
    line = source_line({"meta": {**meta, "runs": [{**run, "started_utc": "2026-12-06 23:50:08"}]}}, tmp_path)
    assert "--report-only` at bbbbbbbbbbbb" in line
    assert "Its cells were computed by `experiments reproduce benchmark --preset cpu --out R` at aaaaaaaaaaaa" in line
    assert "cells" not in source_line({"meta": {**meta, "runs": [{**run, "git": "b" * 40}]}}, tmp_path)  # its own
    two = source_line({"meta": {**meta, "runs": [run, {**run, "id": "2"}]}}, tmp_path)
    assert "Its cells come from 2 runs, listed in the report." in two
