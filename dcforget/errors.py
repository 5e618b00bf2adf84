"""Typed errors. Every user-facing failure raises a subclass of :class:`DcForgetError`; the CLIs turn it into one
line on stderr and exit code 2."""


class DcForgetError(Exception):
    """Base class of every error the toolkit raises on bad input."""


class UnknownNameError(DcForgetError, KeyError):
    """A registry lookup of a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want the plain sentence
        return str(self.args[0]) if self.args else ""


class ConfigError(DcForgetError):
    """A configuration value, preset or TOML file that is invalid."""


class DivergedError(ConfigError):
    """A method's options made the model non-finite (e.g. gradient ascent run too long); nothing is returned."""


class DatasetError(DcForgetError):
    """A dataset that cannot be found, loaded or sliced as asked."""


class ForgetSpecError(DcForgetError):
    """A forget request that is malformed or does not fit the training set."""


class CheckpointError(DcForgetError):
    """A checkpoint that is missing, corrupt, or does not match what it is used with."""


class OutputExistsError(DcForgetError):
    """An output path that exists while ``force`` was not given."""


class MismatchError(DcForgetError):
    """Two inputs that do not belong together (a checkpoint, a condensed file, a dataset). One subclass per kind
    of mismatch, raised by the one pairing check (``dcforget.checkpoint.check_pairing``)."""


class DatasetMismatchError(MismatchError):
    """Made for another dataset."""


class TrainingSetMismatchError(MismatchError):
    """Made from another training set of the same dataset (another per-class cap, data seed or validation split:
    the training-set fingerprints differ)."""


class ArchitectureMismatchError(MismatchError):
    """Another architecture, image shape or class count."""
