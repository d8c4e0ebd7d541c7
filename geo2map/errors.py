"""One exception type for every user-facing error: the CLI prints its message on one line."""

from __future__ import annotations

from pydantic import ValidationError


class Geo2MapError(Exception):
    """A problem with the user's input or environment, with what to do about it."""


def describe_validation_error(e: ValidationError, source: str) -> str:
    """The first problem pydantic found, as one line naming the key (pydantic's own first
    line is only "1 validation error for ...")."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {where!r}; check the spelling against the documented keys"
    return f"{source}: {where}: {err['msg']}"
