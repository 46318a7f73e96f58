"""Errors meant for people: each says what was wrong, with the value, and what to do.

The CLI turns any :class:`CnnlabError` into one line on stderr and exit status 2.
"""


class CnnlabError(Exception):
    """Base class of every error cnnlab raises on purpose (bad input, missing data, ...)."""


class ConfigError(CnnlabError, ValueError):
    """A configuration value or argument is invalid."""


class DataError(CnnlabError, OSError):
    """A data set is missing, truncated or corrupt."""


class ShapeError(CnnlabError, ValueError):
    """A layer would produce an empty (size < 1) or mismatched output."""
