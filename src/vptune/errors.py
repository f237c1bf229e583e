"""User-facing errors: each message names the file, field or value and says what to do."""


class VptuneError(Exception):
    """An error caused by user input; the CLI prints its message without a traceback."""


class ConfigError(VptuneError, ValueError):
    """An invalid configuration value (names the field)."""


class DataError(VptuneError):
    """Missing, empty or unreadable data (names the file or folder)."""


class ArtifactError(VptuneError):
    """A task artifact that cannot be loaded or does not match its backbone."""
