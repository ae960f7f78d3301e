"""Exceptions the command line turns into one clear line and a non-zero exit."""

from __future__ import annotations


class AnatomyR1Error(Exception):
    """Base class for errors a user can fix (bad input, bad config); never a bug in the library."""


class DataError(AnatomyR1Error):
    """An input file or record breaks the data contract; the message names the file and the item."""


class ConfigError(AnatomyR1Error):
    """A config file or command-line override is invalid."""
