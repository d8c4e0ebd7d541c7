"""Tiny real training runs: checkpoint + resume gives the same state, export round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geo2map.errors import Geo2MapError
from geo2map.train import export, run

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "threads=1",
    "data.limit_train=4",
    "data.crop=64",
    "data.moscow_batch=2",
    "data.landcover_batch=2",
    "data.moscow_val=2",
    "data.landcover_val=2",
    "train.val_moscow=1",
    "train.val_landcover=2",
    "train.grid_samples=1",
    "train.checkpoint_every=1",
    "train.val_every=100",
    "data.masks=[]",
    "model.init_from=null",
]
# one small extra source with partial (road-only) labels
ROADS = (
    "data.masks=[{name: roads, data: roads-us, labels: road, gsd_m: [0.4, 0.5], batch: 1, val: 1}]"
)
# the default pipeline's smp U-Net with a tiny decoder; the others' U-Net / ResNet generators
TINY_DEFAULT = [*TINY, "model.kwargs.decoder_channels=[16, 8, 8, 8, 8]"]
TINY_UNET = [*TINY, "model.kwargs.base=4", "model.kwargs.depth=2"]


def _run(out: Path, steps: int, *extra: str) -> Path:
    pipeline = ROOT / "pipelines" / "train-default.yaml"
    return run(
        pipeline, [*TINY_DEFAULT, f"out_dir={out}", f"train.steps={steps}", *extra], progress=False
    )


def test_resume_after_kill_reaches_the_same_state(tmp_path: Path) -> None:
    _run(tmp_path / "a", 2)
    # "killed" after step 1 (warm-up lr does not depend on the total), then resumed to step 2
    _run(tmp_path / "b", 1)
    _run(tmp_path / "b", 2)
    a = load_file(str(tmp_path / "a" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert any(k.startswith("optim:") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) == 3  # header + step 1 + step 2

    # a checkpoint of another architecture is refused, naming it
    with pytest.raises(Geo2MapError, match=r"architecture 'smp-unet'.*refusing"):
        _run(tmp_path / "b", 3, "model.kwargs.decoder_channels=[32, 8, 8, 8, 8]")

    # export -> load_model round trip gives the same outputs
    from geo2map.models.io import load_model

    best = tmp_path / "b" / "best"
    export(best, tmp_path / "exported" / "m")
    m1, card1 = load_model(best)
    m2, card2 = load_model(tmp_path / "exported" / "m")
    assert card1 == card2 and "moscow" in card2.training["validation_split"]
    assert card2.input.multiple == 32  # the smp U-Net downsamples 32x: chips must divide by it
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m1(x)["render"], m2(x)["render"])

    # float16 export: half the file, the same model within float16 rounding
    export(best, tmp_path / "exported" / "half", half=True)
    m3, _ = load_model(tmp_path / "exported" / "half")
    full = (tmp_path / "exported" / "m.safetensors").stat().st_size
    assert (tmp_path / "exported" / "half.safetensors").stat().st_size < 0.6 * full
    with torch.no_grad():
        torch.testing.assert_close(m1(x)["mask_logits"], m3(x)["mask_logits"], atol=2e-2, rtol=1e-2)

    # the palette decode is a card setting; the shipped files are scored exactly as written
    from geo2map.catalog import resolve

    pairs = resolve("osm-moscow-pairs", verify=False)
    export(best, tmp_path / "exported" / "nm", pairs_dir=pairs, half=True,
           palette_decode="nearest-mean")  # fmt: skip
    m4, card4 = load_model(tmp_path / "exported" / "nm")
    assert m4.palette_decode == "nearest-mean"
    assert card4.architecture.kwargs["palette_decode"] == "nearest-mean"
    assert card4.metrics["validation_split"]["pairs"]["count"] == 2
    assert not list((tmp_path / "exported").glob(".*partial*"))

    # int8: calibrated on training images, and the int8 graph (no float parameters) scored
    masks = resolve("landcoverai-chips", verify=False)
    export(best, tmp_path / "exported" / "q", pairs_dir=pairs, masks_dir=masks, half=True,
           int8=True)  # fmt: skip
    _, card5 = load_model(tmp_path / "exported" / "q")
    assert card5.int8 is not None
    assert card5.metrics["validation_split_int8"]["masks"]["count"] == 2

    # a class-weight list that does not fit the 5 mask classes is refused, naming the key
    with pytest.raises(Geo2MapError, match=r"mask_class_weights has 2 values"):
        _run(tmp_path / "c", 1, "loss.mask_class_weights=[1, 2]")


def test_cyclegan_tiny_run(tmp_path: Path) -> None:
    pipeline = ROOT / "pipelines" / "train-cyclegan.yaml"
    over = [*TINY, "model.kwargs.base=4"]
    over += [f"out_dir={tmp_path}", "train.steps=2", "train.pool_size=2", "model.kwargs.n_blocks=1",
             "reverse_model.kwargs.base=4", "reverse_model.kwargs.n_blocks=1",
             "discriminator.kwargs.base=4"]  # fmt: skip
    best = run(pipeline, over, progress=False)
    assert best.with_suffix(".safetensors").is_file()
    ck = load_file(str(tmp_path / "checkpoints" / "last.safetensors"))
    assert {"extra/pool_map", "extra/pool_sat"} <= set(ck)
    assert any(k.startswith("D_sat/") for k in ck) and any(k.startswith("F/") for k in ck)


def test_commands_registered_on_a_typer_app(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from geo2map.train.commands import register_commands

    app = typer.Typer()
    register_commands(app)
    runner = CliRunner()
    out = runner.invoke(app, ["--help"]).output
    assert all(c in out for c in ("train", "evaluate", "export-model"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel:\n  colour: red\n")
    r = runner.invoke(app, ["train", str(bad)])
    assert r.exit_code != 0 and "unknown key 'model.colour'" in str(r.exception)


def test_pix2pix_tiny_run_with_patchgan(tmp_path: Path) -> None:
    pipeline = ROOT / "pipelines" / "train-pix2pix.yaml"
    best = run(pipeline, [*TINY_UNET, f"out_dir={tmp_path}", "train.steps=2", "discriminator.kwargs.base=4"],
               progress=False)  # fmt: skip
    assert best.with_suffix(".json").is_file()
    ck = load_file(str(tmp_path / "checkpoints" / "last.safetensors"))
    assert any(k.startswith("D/") for k in ck) and any(k.startswith("optim:D/") for k in ck)
    header, row = (tmp_path / "log.csv").read_text().splitlines()[:2]
    assert "gan_d" in header and row.split(",")[header.split(",").index("gan_d")] != ""
    with pytest.raises(Geo2MapError, match="no palette render head"):
        export(best, tmp_path / "x", palette_decode="nearest-mean")
    assert not (tmp_path / "x.safetensors").exists()


def test_finetune_starts_from_weights_and_the_card_lists_every_stage(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", 1, ROADS)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0]
    assert "val_roads_road_iou" in header and "not_road" in header
    # a second stage from the first's weights; a near-zero lr keeps the conv weights
    second = _run(tmp_path / "b", 1, ROADS, f"model.init_from={first}", "optim.lr=1e-12")
    from geo2map.models.io import load_model

    (a, _), (b, card) = load_model(first), load_model(second)
    wa, wb = a.state_dict(), b.state_dict()
    key = "net.encoder.conv1.weight"
    torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6)
    stages = card.training["stages"]
    assert [st["steps"] for st in stages] == [1, 1] and card.training["cumulative_steps"] == 2
    assert card.training["init_from"] == str(first)
    assert "roads" in card.training["validation_split"]

    # a start model of another architecture is refused, naming both
    with pytest.raises(
        Geo2MapError,
        match=r"init_from .* is smp-unet .*\[16, 8, 8, 8, 8\].* but this pipeline trains smp-unet .*\[32, 8, 8, 8, 8\]",
    ):
        _run(
            tmp_path / "c",
            1,
            f"model.init_from={first}",
            "model.kwargs.decoder_channels=[32, 8, 8, 8, 8]",
        )


def test_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot happen here")
    r = subprocess.run(
        [sys.executable, "-m", "geo2map.cli", "train", str(ROOT / "pipelines" / "train-default.yaml"),
         "--device", "cuda", "--set", f"out_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --device cuda: no CUDA device is available here (torch.cuda.is_available() is "
        "False); use --device cpu or auto"
    ]
    assert not (tmp_path / "checkpoints").exists()
