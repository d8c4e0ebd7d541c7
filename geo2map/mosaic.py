"""Region mosaics: a GDAL VRT over many output COGs of one CRS (no pixel is copied)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

from geo2map.writer import atomic_write_text


def build_vrt(sources: list[Path], out: Path) -> Path:
    """A VRT mosaic of rasters sharing CRS, band count and dtype (the finest pixel size wins).

    Colour tables and nodata are carried over from the first source; per-dataset masks
    (the renders' validity) become the VRT's mask band.
    """
    metas = []
    for src in sources:
        with rasterio.open(src) as ds:
            metas.append((src, ds.bounds, ds.res, ds.width, ds.height, ds.crs, ds.count, ds.dtypes[0],
                          ds.nodata, ds.colormap(1) if ds.count == 1 else None, ds.block_shapes[0]))  # fmt: skip
    crs, count, dtype, nodata, cmap = (
        metas[0][5],
        metas[0][6],
        metas[0][7],
        metas[0][8],
        metas[0][9],
    )
    resx = min(m[2][0] for m in metas)
    resy = min(m[2][1] for m in metas)
    left = min(m[1].left for m in metas)
    top = max(m[1].top for m in metas)
    right = max(m[1].right for m in metas)
    bottom = min(m[1].bottom for m in metas)
    width, height = round((right - left) / resx), round((top - bottom) / resy)
    gdal_type = {"uint8": "Byte", "uint16": "UInt16", "float32": "Float32"}[dtype]

    def rects(meta) -> str:
        src, b, _, w, h = meta[:5]
        x, y = (b.left - left) / resx, (top - b.top) / resy
        dw, dh = (b.right - b.left) / resx, (b.top - b.bottom) / resy
        return (f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{x:.6f}" yOff="{y:.6f}" xSize="{dw:.6f}" ySize="{dh:.6f}"/>')  # fmt: skip

    def source(meta, band: str) -> str:
        by, bx = meta[10]
        return (f'<SimpleSource><SourceFilename relativeToVRT="1">{escape(_rel(meta[0], out))}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand>"
                f'<SourceProperties RasterXSize="{meta[3]}" RasterYSize="{meta[4]}" DataType="{gdal_type}" '
                f'BlockXSize="{bx}" BlockYSize="{by}"/>{rects(meta)}</SimpleSource>')  # fmt: skip

    bands = []
    for b in range(1, count + 1):
        extra = f"<NoDataValue>{nodata:g}</NoDataValue>" if nodata is not None else ""
        if cmap:
            entries = "".join(f'<Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="{c[3]}"/>'
                              for _, c in sorted(cmap.items()))  # fmt: skip
            extra += f"<ColorInterp>Palette</ColorInterp><ColorTable>{entries}</ColorTable>"
        elif count == 3:
            extra += f"<ColorInterp>{['Red', 'Green', 'Blue'][b - 1]}</ColorInterp>"
        body = "".join(source(m, str(b)) for m in metas)
        bands.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{b}">{extra}{body}</VRTRasterBand>'
        )
    mask = ""
    if nodata is None:  # renders: their per-dataset masks make the mosaic's mask band
        body = "".join(source(m, "mask,1") for m in metas)
        mask = f'<MaskBand><VRTRasterBand dataType="Byte">{body}</VRTRasterBand></MaskBand>'
    return atomic_write_text(
        out,
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        f"<SRS>{escape(crs.to_wkt())}</SRS>"
        f"<GeoTransform>{left!r}, {resx!r}, 0, {top!r}, 0, {-resy!r}</GeoTransform>"
        f"{''.join(bands)}{mask}</VRTDataset>\n",
    )


def _rel(path: Path, vrt: Path) -> str:
    try:
        return str(path.resolve().relative_to(vrt.resolve().parent))
    except ValueError:
        return str(path.resolve())


def repeated_vrt(src: Path, repeats: int, out: Path) -> Path:
    """A VRT that lays ``src`` out ``repeats`` x ``repeats`` times: a large real scene for
    benchmarks and tests, at no disk cost."""
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
