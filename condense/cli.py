"""``condense``: build, inspect, preview and evaluate condensed sets (HDF5)."""

from __future__ import annotations

import click

from dcforget.cli import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Dataset condensation into self-describing HDF5 files.

    The condensers (fdm, mi, dm, kmeans, herding, random) and their commands arrive with the condensation stage.
    """
