"""The user-facing error every layer raises for a configuration problem (kept apart so that the
registries and the config can both use it without importing each other)."""


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message names the fix."""
