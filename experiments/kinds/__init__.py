"""The experiment kinds of the runner (``kind = "..."`` in an experiment file), one module each; importing this
package registers them all in ``workspace.KINDS``."""

from . import (  # noqa: F401  (each registers its kind)
    attacks,
    condensation,
    corrections,
    defense,
    leaderboard,
    successive,
    targets,
    throughput,
    unlearn,
)
