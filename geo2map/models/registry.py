"""Model zoo in one place: architecture names -> builders (cf. pix2pix's define_G)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from geo2map.models.card import Architecture

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_FLAT_COLOURS: set[str] = set()  # may snap their render to a palette (snap_palette())


def register(
    name: str, flat_colours: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BUILDERS[name] = builder
        if flat_colours:
            _FLAT_COLOURS.add(name)
        return builder

    return decorate


def may_draw_flat_colours(name: str) -> bool:
    """Whether models of this architecture may snap their render to a palette: only these
    are built to ask (a network build, e.g. the default's, costs seconds of imports)."""
    return name in _FLAT_COLOURS


def available() -> list[str]:
    return sorted(_BUILDERS)


def build_model(arch: Architecture) -> nn.Module:
    if arch.name not in _BUILDERS:
        raise ValueError(f"unknown architecture {arch.name!r}; known: {', '.join(available())}")
    return _BUILDERS[arch.name](**arch.kwargs)


@register("unet")
def _unet(**kwargs: Any) -> nn.Module:
    from geo2map.models.unet import UNetTranslator

    return UNetTranslator(**kwargs)


@register("smp-unet")
def _smp_unet(**kwargs: Any) -> nn.Module:
    from geo2map.models.smp_unet import SmpUNetTranslator

    return SmpUNetTranslator(**kwargs)


@register("cyclegan-resnet", flat_colours=True)
def _cyclegan_resnet(**kwargs: Any) -> nn.Module:
    from geo2map.models.cyclegan import ResnetGenerator

    return ResnetGenerator(**kwargs)


@register("patchgan")
def _patchgan(**kwargs: Any) -> nn.Module:
    from geo2map.models.discriminator import PatchGAN

    return PatchGAN(**kwargs)


@register("stargan", flat_colours=True)
def _stargan(**kwargs: Any) -> nn.Module:
    from geo2map.models.stargan import StarGanGenerator

    return StarGanGenerator(**kwargs)


@register("stargan-d")
def _stargan_d(**kwargs: Any) -> nn.Module:
    from geo2map.models.stargan import StarGanDiscriminator

    return StarGanDiscriminator(**kwargs)


@register("unit", flat_colours=True)
def _unit(**kwargs: Any) -> nn.Module:
    from geo2map.models.unit import UnitTranslator

    return UnitTranslator(**kwargs)


@register("smp")
def _smp(
    arch: str = "Unet", encoder: str = "resnet34", classes: int = 5, in_channels: int = 3,
    **kwargs: Any,
) -> nn.Module:  # fmt: skip
    """Any segmentation-models-pytorch architecture (Unet, UnetPlusPlus, FPN, DeepLabV3Plus,
    Segformer ...) returning class logits; never downloads encoder weights."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(
            arch, encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
            classes=classes, **kwargs,
        )  # fmt: skip
    except KeyError as e:  # smp names the wrong architecture or encoder and the known ones
        raise ValueError(str(e.args[0] if e.args else e)[:300]) from None
