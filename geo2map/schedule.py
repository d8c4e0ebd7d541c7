"""Which chips each task computes, and how long each chip's output is kept: pure planning.

Output blocks are computed a *group* at a time: a few neighbouring blocks of one strip. A
task computes a *batch*: chips that the same group needs first. A chip whose output a later
group still needs is *carried* to it, cut down to the part that group blends, and dropped
after its last use. So memory holds the groups in flight plus a partial row of chips along
their lower and right edges, whatever the scene's size.

Why batches follow the groups and not the chip grid's raster order: a batch in raster
order mixes chips for the current strip with chips for the next one, and those were held
whole, for a strip, until it ran (a 16k scene peaked ~30 % higher). Which chips share a
task therefore depends on the block size; a chip's *output* does not
(``Translator.predict_chips``), so the numbers are the same for any blocking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from geo2map.tiling import Block, Chip

if TYPE_CHECKING:
    from geo2map.plan import ScenePlan

ChipBox = tuple[tuple[int, int], tuple[int, int]]  # chip-local rows, cols


def block_groups(todo: list[Block], group_size: int) -> list[list[Block]]:
    """Blocks in raster order, cut into groups of at most ``group_size`` within a strip."""
    groups: list[list[Block]] = []
    for blk in todo:
        if groups and len(groups[-1]) < group_size and groups[-1][-1].row == blk.row:
            groups[-1].append(blk)
        else:
            groups.append([blk])
    return groups


def group_batches(touching: list[list[list[Chip]]], batch_size: int) -> list[tuple[int, ...]]:
    """Chip indices per task: each group's chips not needed before, in grid order, cut into
    batches of ``batch_size``. No batch holds a chip for a later group."""
    batches: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for group in touching:
        new = sorted({c.index for chips in group for c in chips} - seen)
        seen.update(new)
        batches += [tuple(new[i : i + batch_size]) for i in range(0, len(new), batch_size)]
    return batches


@dataclass(frozen=True)
class BlockSchedule:
    """The groups, the batches, and what each group needs of each batch, for a list of blocks.

    ``needs[g][k]``: the batches block ``k`` of group ``g`` blends. ``uses[c]``: (group,
    chip-local box) for every block that chip ``c`` touches. ``last_group``: per batch, the
    last group that blends any of its chips; ``chip_last_group`` the same per chip.
    """

    groups: list[list[Block]]
    batches: list[tuple[int, ...]]
    needs: list[list[list[int]]]
    uses: dict[int, list[tuple[int, ChipBox]]]
    last_group: dict[int, int]
    chip_last_group: dict[int, int]

    @classmethod
    def build(cls, plan: ScenePlan, todo: list[Block], group_size: int) -> BlockSchedule:
        groups = block_groups(todo, group_size)
        touching = [[plan.chips_for(b) for b in group] for group in groups]  # one scan a block
        batches = group_batches(touching, plan.chips.batch_size)
        batch_of = {chip: b for b, chips in enumerate(batches) for chip in chips}
        needs = [
            [sorted({batch_of[c.index] for c in chips}) for chips in group] for group in touching
        ]
        uses = chip_uses(plan, groups, touching)
        last_group = {b: g for g, group_needs in enumerate(needs) for bs in group_needs for b in bs}
        chip_last_group = {c: max(g for g, _ in boxes) for c, boxes in uses.items()}
        return cls(groups, batches, needs, uses, last_group, chip_last_group)

    def batches_of_group(self, g: int) -> set[int]:
        return {b for bs in self.needs[g] for b in bs}

    def needed_after(self, batch: int, g: int) -> dict[int, ChipBox]:
        """Per chip of ``batch`` that a group after ``g`` blends: the box those groups need."""
        return {
            c: needed_after(self.uses[c], g)
            for c in self.batches[batch]
            if self.chip_last_group[c] > g
        }

    def cut_after(self, batch: int, g: int, computed_in_g: bool) -> dict[int, ChipBox]:
        """What to carry of ``batch`` past group ``g`` when it must be cut again: empty when it
        is not carried, or when what it holds already is what the later groups need (it was
        cut to that after an earlier group)."""
        if self.last_group[batch] <= g:
            return {}
        crops = self.needed_after(batch, g)
        if computed_in_g or crops != self.needed_after(batch, g - 1):
            return crops
        return {}


def chip_uses(
    plan: ScenePlan, groups: list[list[Block]], touching: list[list[list[Chip]]]
) -> dict[int, list[tuple[int, ChipBox]]]:
    """Per chip index: (group, chip-local box) for every block of every group it touches."""
    size = plan.chips.size
    uses: dict[int, list[tuple[int, ChipBox]]] = {}
    for g, (group, group_chips) in enumerate(zip(groups, touching, strict=True)):
        for blk, chips in zip(group, group_chips, strict=True):
            (r0, r1), (c0, c1) = plan.model_region(blk)
            for ch in chips:
                box = (
                    (max(r0, ch.row) - ch.row, min(r1, ch.row + size) - ch.row),
                    (max(c0, ch.col) - ch.col, min(c1, ch.col + size) - ch.col),
                )
                uses.setdefault(ch.index, []).append((g, box))
    return uses


def needed_after(uses: list[tuple[int, ChipBox]], g: int) -> ChipBox:
    """The bounding box of what groups after ``g`` need of a chip."""
    boxes = [box for group, box in uses if group > g]
    return (
        (min(b[0][0] for b in boxes), max(b[0][1] for b in boxes)),
        (min(b[1][0] for b in boxes), max(b[1][1] for b in boxes)),
    )
