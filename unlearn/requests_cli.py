"""The request path of the ``unlearn`` command (kept out of cli.py so the group stays a thin parser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from dcforget.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from dcforget.condensed import read_condensed
from dcforget.config import check_options, coerce_option, resolve_config, section
from dcforget.datasets import load_data_for
from dcforget.errors import ConfigError
from dcforget.io import atomic_paths, check_writable
from dcforget.runtime import resolve_device

from .methods import DEFAULT_METHOD, METHODS
from .request import unlearn_request


def parse_options(pairs, defaults: dict) -> dict:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--option takes key=value, got {pair!r}")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"unknown option {key!r}; known: {', '.join(sorted(defaults))}")
        out[key] = coerce_option(key, value, defaults[key])  # strict: dsa=ture, steps=-5, lr=nan are errors
    return out


def run_request_cli(*, condensed_file, checkpoint, forget_spec, method, epochs, options, data_dir, download,
                    config_file, preset, seed, device, quiet, out, force) -> None:
    if checkpoint is None:
        raise ConfigError("an unlearning request needs --checkpoint (the model to unlearn from)")
    if forget_spec is None:
        raise ConfigError("an unlearning request needs --forget SPEC (random:F, class:C, classes:..., indices:FILE)")
    defaults = {"method": DEFAULT_METHOD if condensed_file else None, "seed": 0, "unlearn": {}}
    config = resolve_config(defaults, preset, config_file, {"method": method, "seed": seed})
    method = config["method"]
    if method is None:
        raise ConfigError("give --from-condensed FILE (the default method) or --method NAME")
    m = METHODS.get(method)
    opts = {**check_options(section(config, "unlearn").get(method, {}), m.defaults, f" in [unlearn.{method}]"),
            **parse_options(options, m.defaults)}
    if epochs is not None:
        if "epochs" not in m.defaults:
            raise ConfigError(f"method {method!r} has no epochs")
        opts["epochs"] = epochs
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", forget_spec)[:40]
    out_dir = Path(out or f"runs/unlearn/{method}-{slug}")
    model_path, report_path = out_dir / "model.pt", out_dir / "report.json"
    check_writable(model_path, force)
    check_writable(report_path, force)
    meta, _ = read_checkpoint_meta(checkpoint)
    condensed = read_condensed(condensed_file) if condensed_file else None
    if condensed is not None and condensed.dataset != meta.get("dataset"):
        raise ConfigError(f"{condensed_file} condenses {condensed.dataset!r} but the checkpoint is for {meta.get('dataset')!r}")
    dev = resolve_device(device)
    data = load_data_for(meta, data_dir, download)
    ck = load_checkpoint(checkpoint, dataset=data.info.name, fingerprint=data.fingerprint())
    data = data.to(dev)
    previous = meta.get("forgotten") or []
    res = unlearn_request(ck.model, data, forget_spec, method, device=dev, seed=config["seed"], options=opts,
                          condensed=condensed, previous_forget=previous, quiet=quiet, config=config,
                          artefacts=ck.tensors)
    rep = res.report
    rep.update(checkpoint=str(checkpoint), condensed_file=str(condensed_file) if condensed_file else None)
    new_meta = {k: v for k, v in meta.items() if k not in ("model", "toolkit_version", "torch_version", "created_utc")}
    new_meta.update(unlearned_from=str(checkpoint), unlearn_method=method, forgotten=res.split.forget.tolist(),
                    requests=[*meta.get("requests", []), forget_spec], metrics=None, history=None)
    report_text = json.dumps(rep, indent=2)
    with atomic_paths([model_path, report_path], force=force) as (tmp_model, tmp_report):  # both or neither
        save_checkpoint(tmp_model, res.model, new_meta, force=True, tensors=ck.tensors)
        tmp_report.write_text(report_text)
    a = rep["reduced_set"]
    audit = (f"; reduced set {a['reduced_size']} = {a['real_images_used']} real + {a['condensed_images_used']} condensed "
             f"({a['ratio_to_retain']:.2f}x retain), audit {'passed' if a['passed'] else 'FAILED'}") if a else ""
    click.echo(f"{method} on {forget_spec}: RA {100 * rep['retain_acc']:.2f}  FA {100 * rep['forget_acc']:.2f}  "
               f"TA {100 * rep['test_acc']:.2f}  MIA {100 * rep['mia']:.2f}  time {rep['time']['total_s']:.1f} s "
               f"(assembly {rep['time']['assembly_s']:.2f}){audit}")
    click.echo(f"wrote {model_path} and {report_path}")
