"""Errors a user may meet: each carries a message meant to be read, never a traceback."""


class RolloutError(Exception):
    """Base of every error the CLI and the API turn into a clear message."""

    exit_code = 1


class ConfigError(RolloutError):
    """The configuration is invalid or incomplete (names the variable to set)."""

    exit_code = 2


class ServiceError(RolloutError):
    """An embedded or external service (PostgreSQL, Redis) cannot be used."""

    exit_code = 3


class SchemaError(RolloutError):
    """The database schema is missing, behind, or disagrees with the configuration."""

    exit_code = 4
