"""Damaged GeoTIFFs, made from a real scene: every run ends in exit 0 with readable outputs
or exit 2 with one line and nothing written; never a traceback or a half-written file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geo2map.cli import app

SOURCE = "aerial-15cm-rgb-mask.tif"  # small (232 x 383), with an internal mask: quick runs
SEED = 20261207


def ifd_entries(data: bytes) -> list[tuple[int, int]]:
    """(offset of the entry, tag) of the first IFD of a classic little-endian TIFF."""
    assert data[:4] == b"II*\x00", "a classic little-endian TIFF"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    return [(ifd + 2 + 12 * i, struct.unpack_from("<H", data, ifd + 2 + 12 * i)[0])
            for i in range(count)]  # fmt: skip


def variants(original: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(SEED)
    made: dict[str, bytes] = {}
    for offset in sorted(rng.integers(8, len(original), 12)):
        made[f"truncated-at-{offset}"] = original[:offset]
    for i in range(12):  # 1-4 bytes changed in the header and first IFD
        flipped = bytearray(original)
        for pos in rng.integers(0, min(len(original), 600), rng.integers(1, 5)):
            flipped[pos] ^= int(rng.integers(1, 256))
        made[f"header-flip-{i}"] = bytes(flipped)
    for i in range(6):  # bytes changed in the image data
        flipped = bytearray(original)
        for pos in rng.integers(len(original) // 2, len(original), 64):
            flipped[pos] ^= 0xFF
        made[f"data-flip-{i}"] = bytes(flipped)
    for entry, tag in ifd_entries(original):  # each tag in turn "removed": renamed unknown
        removed = bytearray(original)
        struct.pack_into("<H", removed, entry, 65000)
        made[f"tag-{tag}-removed"] = bytes(removed)
    return made


@pytest.fixture(scope="module")
def damaged(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    made = {}
    for name, data in variants((scenes / SOURCE).read_bytes()).items():
        made[name] = folder / f"{name}.tif"
        made[name].write_bytes(data)
    return made


def test_damaged_geotiffs_end_cleanly(damaged, models, tmp_path):
    runner = CliRunner()
    outcomes = {}
    for name, path in damaged.items():
        out = tmp_path / name
        result = runner.invoke(app, ["translate", str(path), "--out", str(out), "--model",
                                     models(0.6), "--chip-size", "64", "--overlap", "8"])  # fmt: skip
        outcomes[name] = result.exit_code
        assert result.exit_code in (0, 2), f"{name}: {result.exception!r}\n{result.output}"
        if result.exit_code == 2:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}: {result.stderr}"
            assert not out.exists() or list(out.iterdir()) == [], f"{name} left files"
        else:
            written = sorted(p.name for p in out.iterdir())
            assert not [n for n in written if n.startswith(".")], f"{name}: {written}"
            for tif in (out / f"{name}_render.tif", out / f"{name}_mask.tif"):
                with rasterio.open(tif) as ds:
                    ds.read()
    # the variants exercise both ends: some damage is refused, some is harmless
    assert 0 in outcomes.values() and 2 in outcomes.values()
    assert len(outcomes) >= 40
