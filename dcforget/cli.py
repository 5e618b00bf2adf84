"""What the stage CLIs share: error handling (typed error -> one line, exit 2) and the contract's options."""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import click

from .datasets import DATA_DIR_ENV
from .errors import DcForgetError


class CliError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:  # one line, no traceback
        click.echo("error: " + " ".join(self.format_message().split()), err=True)


def _one_line(err: click.ClickException) -> CliError:
    """click's own errors (missing argument, bad option value, no such option...) as one ``error:`` line: the
    message, then where the help is, instead of click's usage block."""
    msg = err.format_message()
    ctx = getattr(err, "ctx", None)
    if isinstance(err, click.UsageError) and ctx is not None:
        msg = f"{msg.rstrip()} (see '{ctx.command_path} --help')"
    return CliError(msg)


class Group(click.Group):
    """A click group whose commands turn toolkit errors, and click's usage errors, into one ``error: ...`` line on
    stderr and exit code 2. ``--help`` and a bare group name still print the help."""

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except (click.exceptions.NoArgsIsHelpError, CliError):
            raise
        except click.ClickException as err:
            raise _one_line(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DcForgetError as err:
            raise CliError(str(err)) from None
        except (click.exceptions.NoArgsIsHelpError, CliError):
            raise
        except click.ClickException as err:
            raise _one_line(err) from None


SEED = click.IntRange(0, 2 ** 63 - 1)  # what torch generators take (a larger one used to overflow deep inside)


def _opt(*names: str, **kw) -> Callable:
    return click.option(*names, **kw)


def data_options(f: Callable) -> Callable:
    f = _opt("--download/--no-download", default=True, show_default=True,
             help="Download the dataset when it is not in --data-dir (needs network).")(f)
    f = _opt("--val-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
             help="Fraction of the (capped) training set held out as the validation split, stratified and "
                  "seeded; 0 = none (default 0.15, as Deep Unlearn; a checkpoint's own value when one is given).")(f)
    f = _opt("--per-class", type=click.IntRange(min=1, max=2 ** 62), default=None,
             help="Keep at most N training images per class (seeded choice), e.g. DC-U's 4500.")(f)
    f = _opt("--data-dir", type=click.Path(file_okay=False), envvar=DATA_DIR_ENV, default=None,
             help=f"Where datasets live (default ./data; env {DATA_DIR_ENV}).")(f)
    return f


def run_options(f: Callable) -> Callable:
    f = _opt("--quiet", "-q", is_flag=True, help="No progress bars.")(f)
    f = _opt("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available).")(f)
    f = _opt("--seed", type=SEED, default=None, help="Seed of every random choice (default 0).")(f)
    f = _opt("--preset", type=click.Choice(["smoke", "cpu", "paper"]), default=None,
             help="Settings preset from configs/presets/.")(f)
    f = _opt("--config", "config_file", type=click.Path(dir_okay=False), default=None,
             help="TOML config; explicit flags override it.")(f)
    return f


def out_options(default_help: str) -> Callable:
    def deco(f: Callable) -> Callable:
        f = _opt("--force", is_flag=True, help="Overwrite an existing output.")(f)
        f = _opt("--out", type=click.Path(dir_okay=False), default=None, help=default_help)(f)
        return f

    return deco


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")


def with_logging(f: Callable) -> Callable:
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        setup_logging(kwargs.get("quiet", False))
        return f(*args, **kwargs)

    return wrapper
