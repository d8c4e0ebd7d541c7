"""Helpers for the benchmarks: a large real scene as a VRT mosaic of a real scene."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

from geo2map.catalog import resolve


def repeated_scene_vrt(name: str, repeats: int, out: Path) -> Path:
    """A VRT that tiles catalog scene ``name`` ``repeats`` x ``repeats`` times (same CRS)."""
    src = resolve(name)
    with rasterio.open(src) as ds:
        w, h, t, count = ds.width, ds.height, ds.transform, ds.count
        crs_wkt = ds.crs.to_wkt()
        block = ds.block_shapes[0]
    bands = []
    for b in range(1, count + 1):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename>'
            f"<SourceBand>{b}</SourceBand>"
            f'<SourceProperties RasterXSize="{w}" RasterYSize="{h}" DataType="Byte" '
            f'BlockXSize="{block[1]}" BlockYSize="{block[0]}"/>'
            f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
            f'<DstRect xOff="{i * w}" yOff="{j * h}" xSize="{w}" ySize="{h}"/></SimpleSource>'
            for j in range(repeats)
            for i in range(repeats)
        )
        interp = ["Red", "Green", "Blue"][b - 1] if b <= 3 else "Undefined"
        bands.append(
            f'<VRTRasterBand dataType="Byte" band="{b}"><ColorInterp>{interp}</ColorInterp>'
            f"{sources}</VRTRasterBand>"
        )
    gt = f"{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}"
    out.write_text(
        f'<VRTDataset rasterXSize="{w * repeats}" rasterYSize="{h * repeats}">'
        f"<SRS>{escape(crs_wkt)}</SRS>"
        f"<GeoTransform>{gt}</GeoTransform>{''.join(bands)}</VRTDataset>"
    )
    return out
