"""data_catalog.yaml -> typed entries, resolved under a data root and checked by sha256.

The data root is the one place geo2map reads the environment: ``--data-root`` beats
``$GEO2MAP_DATA_ROOT``, which beats ``../shared/data`` (from the current folder, then from
the project checkout).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from geo2map.errors import Geo2MapError
from geo2map.yaml_input import read_yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CATALOG_FILE = PROJECT_ROOT / "data_catalog.yaml"
DATA_ROOT_ENV = "GEO2MAP_DATA_ROOT"


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["scene", "labels", "pairs", "masks"]
    path: str
    url: str
    sha256: str
    licence: str
    crs: str | None = None
    pixel_size: float | None = None
    size: list[int] | None = None
    bands: int | None = None
    dtype: str | None = None
    description: str = ""

    @property
    def is_folder(self) -> bool:
        return self.kind in ("pairs", "masks")


def data_root(override: str | Path | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser().resolve()
    for base in (Path.cwd(), PROJECT_ROOT):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return (Path.cwd() / ".." / "shared" / "data").resolve()


def load_catalog(path: Path = CATALOG_FILE) -> dict[str, CatalogEntry]:
    if not path.is_file():
        raise Geo2MapError(f"data catalog {path} not found: run from a geo2map checkout")
    doc = read_yaml(path)
    return {name: CatalogEntry(name=name, **fields) for name, fields in doc["entries"].items()}


def sha256_of(path: Path) -> str:
    """File hash, or for a folder the hash of its sorted ``sha256sum`` listing."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    lines = []
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = "./" + f.relative_to(path).as_posix()
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {rel}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def resolve(name: str, root: str | Path | None = None, verify: bool = True) -> Path:
    """Local path of a catalog entry: present and verified, downloaded, or a clear error."""
    entries = load_catalog()
    if name not in entries:
        raise Geo2MapError(
            f"{name!r} is not in data_catalog.yaml; `geo2map catalog list` shows names"
        )
    entry = entries[name]
    path = data_root(root) / entry.path
    if not path.exists():
        _fetch(entry, path)
    if verify and sha256_of(path) != entry.sha256:
        raise Geo2MapError(
            f"{path} does not match the sha256 in data_catalog.yaml for {name!r}: "
            f"replace it with the file from {entry.url}"
        )
    return path


def _fetch(entry: CatalogEntry, path: Path) -> None:
    where = f"put it at {path} (or point --data-root / ${DATA_ROOT_ENV} at a folder holding {entry.path})"
    if entry.is_folder:
        raise Geo2MapError(f"{entry.name} is missing: copy the folder {entry.url} and {where}")
    try:
        import pooch

        pooch.get_logger().setLevel("WARNING")  # our own error says it all on failure
        pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=path.name,
            path=path.parent,
            progressbar=False,
            downloader=pooch.HTTPDownloader(timeout=20),
        )
    except Exception as e:  # noqa: BLE001 - any network failure ends in the same advice
        raise Geo2MapError(
            f"{entry.name} is missing and could not be downloaded from {entry.url} "
            f"({type(e).__name__}): {where}"
        ) from None


def is_present(entry: CatalogEntry, root: str | Path | None = None) -> bool:
    return (data_root(root) / entry.path).exists()
