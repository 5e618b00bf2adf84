"""The committed tuned-options files (configs/tuned/*/*/*.json) name a study that exists and say how they were made.

Cheap checks, no training: each file's provenance is complete (the command that wrote it, the code's git commit, the
seeds, the selection rule, the study's summary and where its journal was), agrees with itself (the study's best trial
and norm are the file's, the norm is that of the objectives, the command tuned this method on this forget spec), and
its commit is in this repository. `experiments check-tuned` (heavy: it retrains) checks the figures themselves."""

from __future__ import annotations

import itertools
import json
import math
import shlex
import subprocess
from pathlib import Path

import pytest

from experiments.hpsearch import OBJECTIVES, StudySetup
from unlearn.methods import METHODS

REPO = Path(__file__).resolve().parent.parent
FILES = sorted((REPO / "configs" / "tuned").glob("*/*/*.json"))
IDS = [str(p.relative_to(REPO / "configs" / "tuned")) for p in FILES]

# Pairs of files of different methods holding exactly the same options, known and not yet resolved: (file, file) ->
# why. A new coincidence fails the test below until it is explained here (or the files are re-tuned).
# pairs of tuned files of different methods whose options are identical, with the reason; none at present (the
# last one, lfssd.class.json = ssd.json, came from two studies sharing a sampler seed: studies now offset the seed by
# the method, and both were re-tuned after the SSD batch-order fix)
KNOWN_SAME_OPTIONS: dict[tuple[str, str], str] = {}


def _doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_are_tuned_files():
    assert FILES, "no committed tuned-options file found under configs/tuned"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_provenance_is_complete(path):
    d = _doc(path)
    where = str(path.relative_to(REPO))
    for key in (
        "method",
        "dataset",
        "model",
        "preset",
        "options",
        "objectives",
        "norm",
        "trial",
        "setup",
        "study",
        "selection",
        "meta",
        "space",
        "study_storage",
    ):
        assert key in d, f"{where} records no {key!r}"
    assert d["method"] in METHODS.names(), f"{where}: unknown method {d['method']!r}"
    unknown = set(d["options"]) - set(METHODS.get(d["method"]).defaults)
    assert not unknown, f"{where}: options the method does not have: {sorted(unknown)}"
    assert path.parent.parent.name == d["preset"] and path.parent.name == f"{d['dataset']}-{d['model']}", where
    setup = StudySetup.from_dict(d["setup"])  # a setup the study code accepts
    assert (setup.dataset.split(":")[0], setup.model) == (d["dataset"], d["model"]), where
    meta = d["meta"]
    for key in ("command", "git", "seeds", "finished_utc", "machine", "torch"):
        assert meta.get(key) not in (None, "", []), f"{where}: meta records no {key!r}"
    assert meta["git"] != "unknown", f"{where}: written outside a git checkout (no code version)"
    assert list(meta["seeds"]) == list(setup.seeds), f"{where}: meta's seeds {meta['seeds']} are not the setup's"
    assert "validation" in d["selection"], f"{where}: the selection rule does not say it read validation"
    assert set(d["objectives"]) == set(OBJECTIVES), f"{where}: objectives {sorted(d['objectives'])}"
    assert math.isclose(math.sqrt(sum(v * v for v in d["objectives"].values())), d["norm"], rel_tol=1e-9), where
    study = d["study"]
    for key in ("trials", "best_trial", "best_norm", "sampler"):
        assert key in study, f"{where}: the study's summary records no {key!r}"
    assert study["best_trial"] == d["trial"] and math.isclose(study["best_norm"], d["norm"], rel_tol=1e-12), where
    assert isinstance(d["trial"], int) and d["trial"] >= 0 and study["trials"] >= 1, where
    assert str(d["study_storage"]).strip(), f"{where}: no study storage"
    # the command that wrote it tuned this method on this forget spec
    argv = shlex.split(meta["command"])
    assert argv[:2] == ["experiments", "tune"], f"{where}: not written by `experiments tune`: {meta['command']!r}"
    methods = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--method"]
    assert d["method"] in methods, f"{where}: its command tuned {methods}, not {d['method']!r}"
    forget = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--forget"]
    assert forget in ([], [setup.forget]), f"{where}: command's --forget {forget} is not the setup's {setup.forget!r}"
    if "--study" in argv:
        assert argv[argv.index("--study") + 1] == d["study_storage"], where
    if d["preset"] in ("cpu", "paper", "smoke"):
        assert f"--preset {d['preset']}" in meta["command"], f"{where}: command's preset is not {d['preset']!r}"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_commit_is_in_the_repository(path):
    try:
        inside = _git("rev-parse", "--is-inside-work-tree")
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"git is not available here ({err}): the commit cannot be looked up")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        pytest.skip("not a git checkout (e.g. an sdist or an exported tree): the commit cannot be looked up")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone holds only recent commits: the commit cannot be looked up")
    commit = _doc(path)["meta"]["git"].split("+")[0]
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, (
        f"{path.relative_to(REPO)} names commit {commit}, which is not in this repository"
    )


def _same_option_pairs() -> list[tuple[str, str]]:
    docs = {str(p.relative_to(REPO / "configs" / "tuned")): _doc(p) for p in FILES}
    return [
        (a, b)
        for (a, da), (b, db) in itertools.combinations(sorted(docs.items()), 2)
        if da["method"] != db["method"] and da["options"] and da["options"] == db["options"]
    ]


def test_no_unexplained_identical_options_across_methods():
    """Two studies of different methods choosing exactly the same options (every float to the last digit) is not
    what independent searches do: a copied file or a mixed-up study. Known cases are listed (and xfailed below)."""
    unexplained = [p for p in _same_option_pairs() if p not in KNOWN_SAME_OPTIONS]
    assert not unexplained, f"tuned files of different methods with identical options: {unexplained}"


def test_every_known_identical_pair_is_still_identical():
    """An entry of KNOWN_SAME_OPTIONS must still describe files that hold identical options (else it is stale)."""
    same = _same_option_pairs()
    stale = [pair for pair in KNOWN_SAME_OPTIONS if pair not in same]
    assert not stale, f"{stale} no longer hold identical options: remove them from KNOWN_SAME_OPTIONS"
