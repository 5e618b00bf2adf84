"""The request path of the ``unlearn`` command (kept out of cli.py so the group stays a thin parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from dcforget.checkpoint import save_checkpoint
from dcforget.config import resolve_config, section
from dcforget.errors import ConfigError
from dcforget.io import atomic_paths, check_writable

from .methods import DEFAULT_METHOD
from .request import UnlearnRequest


def run_request_cli(*, condensed_file, checkpoint, forget_spec, method, epochs, options, data_dir, download,
                    config_file, preset, seed, device, quiet, out, force) -> None:
    if checkpoint is None:
        raise ConfigError("an unlearning request needs --checkpoint (the model to unlearn from)")
    if forget_spec is None:
        raise ConfigError("an unlearning request needs --forget SPEC (random:F, class:C, classes:..., indices:FILE)")
    defaults = {"method": DEFAULT_METHOD if condensed_file else None, "seed": 0, "unlearn": {}}
    config = resolve_config(defaults, preset, config_file, {"method": method, "seed": seed})
    method = config["method"]
    table = section(config, "unlearn").get(method, {}) if method else {}
    if not isinstance(table, dict):
        raise ConfigError(f"config section [unlearn.{method}] must be a table")
    request = UnlearnRequest(checkpoint, forget_spec, method, condensed_file, options=table, option_pairs=tuple(options),
                             epochs=epochs, seed=config["seed"], device=device, data_dir=data_dir, download=download)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", forget_spec)[:40]
    out_dir = Path(out or f"runs/unlearn/{method or DEFAULT_METHOD}-{slug}")
    model_path, report_path = out_dir / "model.pt", out_dir / "report.json"
    check_writable(model_path, force)  # before any work
    check_writable(report_path, force)
    prepared = request.prepare()
    res = prepared.run(quiet=quiet, config=config)
    rep = res.report
    report_text = json.dumps(rep, indent=2)
    with atomic_paths([model_path, report_path], force=force) as (tmp_model, tmp_report):  # both or neither
        save_checkpoint(tmp_model, res.model, prepared.output_meta(res), force=True, tensors=prepared.checkpoint.tensors)
        tmp_report.write_text(report_text)
    a = rep["reduced_set"]
    audit = (f"; reduced set {a['reduced_size']} = {a['real_images_used']} real + {a['condensed_images_used']} condensed "
             f"({a['ratio_to_retain']:.2f}x retain), audit {'passed' if a['passed'] else 'FAILED'}") if a else ""
    click.echo(f"{prepared.method} on {forget_spec}: RA {100 * rep['retain_acc']:.2f}  FA {100 * rep['forget_acc']:.2f}  "
               f"TA {100 * rep['test_acc']:.2f}  MIA {100 * rep['mia']:.2f}  time {rep['time']['total_s']:.1f} s "
               f"(assembly {rep['time']['assembly_s']:.2f}){audit}")
    click.echo(f"wrote {model_path} and {report_path}")
