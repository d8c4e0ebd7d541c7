"""Console output shared by every command: one-line errors, exit code 2."""

from __future__ import annotations

from collections.abc import Callable

import typer
from pydantic import ValidationError
from rich.console import Console

from geo2map.errors import Geo2MapError

out_console = Console()
err_console = Console(stderr=True)


def run_guarded(fn: Callable[[], None]) -> None:
    """Run a command; user errors become one line on stderr and exit code 2."""
    try:
        fn()
    except Geo2MapError as e:
        err_console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        err_console.print(f"[red]error:[/red] {where + ': ' if where else ''}{msg}", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]: no partial outputs were kept")
        raise typer.Exit(130) from None
