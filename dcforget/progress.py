"""Progress bars (tqdm on stderr) that one switch silences, and the toolkit's logger."""

from __future__ import annotations

import logging
import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger("dcforget")


def bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    quiet: bool = False,
    leave: bool = True,
    unit: str = "it",
) -> tqdm:
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=quiet,
        leave=leave,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
