"""The error every layer raises for bad user input (the CLI's exit status 2)."""


class ConfigError(ValueError):
    """Invalid user input. The message names the offending key and value."""
