"""``attacks``: membership inference, U-LiRA, the epsilon metric, model inversion and defenses."""

from __future__ import annotations

import click

from dcforget.cli import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Privacy attacks on (unlearned) models, and defenses.

    The commands (mia, ulira, epsilon, invert, defend) arrive with the attacks stage.
    """
