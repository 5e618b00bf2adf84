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


class Interrupted(CliError):
    """Ctrl-C: ``error: interrupted`` and exit code 130 (128 + SIGINT, what a shell reports for a command it
    interrupted; not 2, which says the input was bad). Outputs are written atomically, so none is left half-done."""

    exit_code = 130


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
        except (KeyboardInterrupt, click.exceptions.Abort):
            raise Interrupted("interrupted") from None


class BoundedInt(click.IntRange):
    """An IntRange whose huge upper bound (a machine limit, not a choice) is shown as a power of two in help."""

    def _describe_range(self) -> str:
        top = self.max + 1 if self.max is not None else None
        if top is not None and top & (top - 1) == 0 and top > 2**31:
            return f"{self.min}<=x<2^{top.bit_length() - 1}"
        return super()._describe_range()


SEED = BoundedInt(0, 2**63 - 1)  # what torch generators take (a larger one used to overflow deep inside)
PRESETS = ("smoke", "cpu", "paper")

# Every option that more than one command has, declared once: (parameter declarations, click keyword arguments).
# ``--per-class`` means one thing everywhere: the training-set cap. Other counts have names of their own.
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "data_dir": (
        ("--data-dir",),
        dict(
            type=click.Path(file_okay=False),
            envvar=DATA_DIR_ENV,
            default=None,
            help=f"Where datasets live (default ./data; env {DATA_DIR_ENV}).",
        ),
    ),
    "download": (
        ("--download/--no-download",),
        dict(
            default=True, show_default=True, help="Download the dataset when it is not in --data-dir (needs network)."
        ),
    ),
    "per_class": (
        ("--per-class",),
        dict(
            type=BoundedInt(min=1, max=2**62 - 1),
            default=None,
            help="Training-set cap: keep at most N training images per class (seeded choice), e.g. DC-U's 4500.",
        ),
    ),
    "val_fraction": (
        ("--val-fraction",),
        dict(
            type=click.FloatRange(min=0, max=1, max_open=True),
            default=None,
            help="Fraction of the (capped) training set held out as the "
            "validation split, stratified and seeded; 0 = none (default "
            "0.15, as Deep Unlearn; a checkpoint's own value when one is "
            "given).",
        ),
    ),
    "seed": (("--seed",), dict(type=SEED, default=None, help="Seed of every random choice (default 0).")),
    "device": (("--device",), dict(default=None, help="cpu, cuda or cuda:N (default: CUDA when available).")),
    "config": (
        ("--config", "config_file"),
        dict(type=click.Path(dir_okay=False), default=None, help="TOML config; explicit flags override it."),
    ),
    "preset": (
        ("--preset",),
        dict(type=click.Choice(PRESETS), default=None, help="Settings preset (configs/presets/)."),
    ),
    "force": (("--force",), dict(is_flag=True, help="Overwrite existing outputs.")),
    "quiet": (("--quiet", "-q"), dict(is_flag=True, help="No progress bars or progress lines.")),
    "executor": (
        ("--executor",),
        dict(
            type=click.Choice(["local", "ray"]),
            default=None,
            help="Where jobs run: local (this machine; default) or ray (a Ray cluster, pip install 'dcforget[ray]').",
        ),
    ),
    "workers": (
        ("--workers",),
        dict(
            type=click.IntRange(min=1),
            default=None,
            help="local executor: processes running jobs at once (default 1); each gets "
            "cores // workers torch threads.",
        ),
    ),
    "address": (
        ("--address",),
        dict(
            default=None,
            help="ray executor: the cluster's address (e.g. ray://host:10001 or auto); default: start a local Ray.",
        ),
    ),
    "tuned": (
        ("--tuned/--untuned",),
        dict(
            default=True,
            show_default=True,
            help="Use each method's tuned options for this dataset, model and kind "
            "of forgetting (configs/tuned/, written by `experiments tune`) where "
            "there are some; --option values override them. --untuned reads no tuned "
            "file and no policy entry (`unlearn` without --method runs the registered default).",
        ),
    ),
    "option": (
        ("--option", "options"),
        dict(multiple=True, metavar="KEY=VALUE", help="An option of the method (repeatable); types are checked."),
    ),
}


def opt(name: str, **overrides: Any) -> Callable:
    """The shared option ``name`` (a key of SHARED), with this command's ``default``, ``required`` or ``help``."""
    decls, kw = SHARED[name]
    return click.option(*decls, **{**kw, **overrides})


def options(*names: str) -> Callable:
    """Several shared options at once, in the order given (as they appear in --help)."""

    def deco(f: Callable) -> Callable:
        for name in reversed(names):
            f = opt(name)(f)
        return f

    return deco


def out_file(help: str, **kw: Any) -> Callable:
    """``--out FILE``: a command whose output is one file."""
    return click.option(
        "--out", **{"type": click.Path(dir_okay=False), "default": None, "help": f"File to write: {help}", **kw}
    )


def out_dir(help: str, **kw: Any) -> Callable:
    """``--out DIR``: a command whose output is several files in one directory."""
    return click.option(
        "--out", **{"type": click.Path(file_okay=False), "default": None, "help": f"Directory to write: {help}", **kw}
    )


data_options = options("data_dir", "per_class", "val_fraction", "download")
run_options = options("config", "preset", "seed", "device", "quiet")


def out_options(help: str) -> Callable:
    """``--out FILE`` and ``--force``."""

    def deco(f: Callable) -> Callable:
        return out_file(help)(opt("force")(f))

    return deco


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")


def with_logging(f: Callable) -> Callable:
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        setup_logging(kwargs.get("quiet", False))
        return f(*args, **kwargs)

    return wrapper
