"""The comparison table and picture grid of docs/models.md, on the fixed validation split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from geo2map.catalog import resolve
from geo2map.models.io import load_model
from geo2map.train.data import LandCoverChips, MoscowPairs, list_pairs, split_names
from geo2map.train.evaluate import (
    CLASS_NAMES,
    mask_picture,
    most_common_colour_baseline,
    predict,
    score_chips,
    score_pairs,
    snapped_map_oracle,
)

COLUMNS = ["rmse", "acc5", "acc10", "ssim", "lc_miou"] + [f"lc_iou_{n}" for n in CLASS_NAMES]


def build_report(
    models: dict[str, str | Path],
    out_md: Path,
    out_png: Path,
    moscow_val: int = 100,
    lc_val: int = 100,
) -> dict[str, Any]:
    root = resolve("osm-moscow-pairs", verify=False)
    lc_root = resolve("landcoverai-chips", verify=False)
    tr, va = split_names([s for s, _, _ in list_pairs(root, "sat", "map")], moscow_val)
    _, va2 = split_names(LandCoverChips(lc_root).names, lc_val)
    val, train = MoscowPairs(root, va), MoscowPairs(root, tr, cache=False)
    chips = LandCoverChips(lc_root, va2)
    rows: dict[str, dict[str, Any]] = {
        "most common map colour (trivial)": most_common_colour_baseline(val, train),
        "true map snapped to the palette (upper bound)": snapped_map_oracle(val),
    }
    renders: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray]] = {}
    pick = [0, 3, 7, 12]
    for name, path in models.items():
        model, card = load_model(path)
        m, _ = score_pairs(model, val, card.input.mean, card.input.std)
        m2, _ = score_chips(model, chips, card.input.mean, card.input.std)
        rows[name] = {**m, **{f"lc_{k}": v for k, v in m2.items()}}
        r, _ = predict(model, [val[i].image for i in pick], card.input.mean, card.input.std)
        _, mk = predict(model, [chips[i].image for i in pick], card.input.mean, card.input.std)
        renders[name], masks[name] = r, mk
    lines = ["| model | RMSE | acc5 | acc10 | SSIM | LC mIoU | " + " | ".join(CLASS_NAMES) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name, r in rows.items():
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else "-" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    out_md.write_text("\n".join(lines) + "\n")
    Path(str(out_md) + ".json").write_text(json.dumps(rows, indent=1, default=str))
    # grid: Moscow rows (sat | map | render per model), then LandCover rows (img | truth | mask)
    cell = 160
    ncols = 2 + len(models)
    grid = Image.new("RGB", (ncols * cell, 2 * len(pick) * cell), (255, 255, 255))

    def put(img: np.ndarray, r: int, c: int) -> None:
        tile = Image.fromarray(np.asarray(img, np.uint8)).resize((cell, cell), Image.BILINEAR)
        grid.paste(tile, (c * cell, r * cell))

    for k, i in enumerate(pick):
        put(val[i].image, k, 0)
        put(val[i].map_rgb, k, 1)
        for j, name in enumerate(models):
            put(renders[name][k], k, 2 + j)
        put(chips[i].image, len(pick) + k, 0)
        put(mask_picture(chips[i].mask), len(pick) + k, 1)
        for j, name in enumerate(models):
            put(mask_picture(masks[name][k]), len(pick) + k, 2 + j)
    grid.quantize(128).save(out_png, optimize=True)
    return rows
