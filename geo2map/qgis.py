"""QGIS style sidecars: ``<mask>.qml`` beside the mask, loaded by QGIS automatically."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import rasterio

from geo2map.vectorize import mask_classes
from geo2map.writer import atomic_write_text


def write_mask_qml(mask_path: Path, out: Path | None = None) -> Path:
    """A paletted-raster style with the mask's class names and colours."""
    with rasterio.open(mask_path) as ds:
        classes = mask_classes(ds)
        cmap = ds.colormap(1)
    entries = "\n".join(
        f'        <paletteEntry value="{k}" color="#{r:02x}{g:02x}{b:02x}" alpha="255" '
        f"label={quoteattr(name)}/>"
        for k, name in sorted(classes.names.items())
        for r, g, b, _ in [cmap[k]]
    )
    qml = f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.28" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
  </pipe>
</qgis>
"""
    return atomic_write_text(out or mask_path.with_suffix(".qml"), qml)
