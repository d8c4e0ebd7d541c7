"""One exception type for every user-facing error: the CLI prints its message on one line."""


class Geo2MapError(Exception):
    """A problem with the user's input or environment, with what to do about it."""
