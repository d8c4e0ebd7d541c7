"""YAML files a user wrote (pipelines, the data catalog): parsed safely, every failure one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from geo2map.errors import Geo2MapError


def read_yaml(path: str | Path) -> Any:
    """The document in ``path`` (``yaml.safe_load``: no Python tags). Malformed YAML and
    documents nested too deeply for the parser (it recurses once per level) are refused."""
    return parse_yaml(Path(path).read_text(), str(path))


def parse_yaml(text: str, source: str) -> Any:
    """``text`` parsed as :func:`read_yaml` does; ``source`` names it in the error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Geo2MapError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise Geo2MapError(
            f"{source}: the YAML is nested too deeply to read; a pipeline needs a few levels"
        ) from None
