"""The chip grid covers every pixel and blends with weights that never vanish."""

import numpy as np
import pytest

from geo2map.tiling import (
    AxisMap,
    ChipGrid,
    ChipPart,
    blend_chips,
    blocks,
    chip_starts,
    first_argmax,
    pack_chip_output,
)


@pytest.mark.parametrize("length", [1, 15, 64, 65, 100, 127, 128, 129, 1000, 1023])
@pytest.mark.parametrize(("chip", "overlap"), [(64, 0), (64, 16), (128, 32), (64, 63)])
def test_chip_starts_cover_every_pixel_including_the_last(length, chip, overlap):
    starts = chip_starts(length, chip, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + chip] = True
    assert covered.all()
    assert starts[0] == 0
    if length >= chip:
        assert starts[-1] + chip == length  # flush with the right/bottom edge
        assert all(b - a <= chip - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_non_square_grid_chips_and_weights():
    grid = ChipGrid(height=100, width=300, size=64, overlap=16, batch_size=3)
    covered = np.zeros((100, 300), np.float32)
    for chip in grid.chips:
        w = grid.weights(chip)
        assert (w > 0).all()
        covered[chip.row : chip.row + 64, chip.col : chip.col + 64] += w
    assert (covered > 0).all()


def test_chips_touching_a_region_are_exactly_those_overlapping_it_in_grid_order():
    rng = np.random.default_rng(3)
    for _ in range(200):
        size = int(rng.integers(8, 40))
        grid = ChipGrid(
            height=int(rng.integers(1, 200)), width=int(rng.integers(1, 200)), size=size,
            overlap=int(rng.integers(0, size)), batch_size=4,
        )  # fmt: skip
        r0, c0 = int(rng.integers(0, grid.height)), int(rng.integers(0, grid.width))
        rows = (r0, int(rng.integers(r0 + 1, grid.height + 1)))
        cols = (c0, int(rng.integers(c0 + 1, grid.width + 1)))
        overlapping = [
            ch
            for ch in grid.chips
            if ch.row < rows[1] and ch.row + size > rows[0]
            and ch.col < cols[1] and ch.col + size > cols[0]
        ]  # fmt: skip
        assert grid.chips_touching(rows, cols) == overlapping


def test_border_chips_have_full_weight_at_the_scene_border():
    grid = ChipGrid(height=200, width=200, size=64, overlap=32, batch_size=4)
    first, last = grid.chips[0], grid.chips[-1]
    assert grid.weights(first)[0, 0] == 1.0
    assert grid.weights(last)[-1, -1] == 1.0
    inner = grid.weights(first)[-1, -1]
    assert 0 < inner < 1  # fades towards neighbours


def test_blend_of_constant_chips_is_that_constant_everywhere():
    grid = ChipGrid(height=90, width=130, size=32, overlap=8, batch_size=2)
    outputs = {c.index: np.full((2, 32, 32), 0.25, np.float32) for c in grid.chips}
    values, covered = blend_chips(grid, outputs, (0, 90), (0, 130))
    assert covered.all()
    np.testing.assert_allclose(values, 0.25, rtol=1e-6)


def test_blend_is_the_weighted_mean_of_the_chips_under_each_pixel():
    # uint8 chips as the pipeline keeps them; the last chips overlap their neighbours by more
    # than the ramp (flush with the edge), where weight-1 parts of two chips meet
    rng = np.random.default_rng(2)
    grid = ChipGrid(height=100, width=150, size=32, overlap=8, batch_size=2)
    outputs = {c.index: rng.integers(0, 256, (3, 32, 32), dtype=np.uint8) for c in grid.chips}
    total = np.zeros((3, 100, 150))
    weight = np.zeros((100, 150))
    for c in grid.chips:
        w = grid.weights(c).astype(np.float64)
        total[:, c.row : c.row + 32, c.col : c.col + 32] += outputs[c.index] * w
        weight[c.row : c.row + 32, c.col : c.col + 32] += w
    rows, cols = (5, 97), (3, 149)
    values, _ = blend_chips(grid, outputs, rows, cols)
    expected = (total / weight)[:, 5:97, 3:149]
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-4)


def test_blend_is_the_same_whatever_region_is_asked_for():
    rng = np.random.default_rng(0)
    grid = ChipGrid(height=90, width=130, size=32, overlap=8, batch_size=2)
    outputs = {c.index: rng.random((3, 32, 32), dtype=np.float32) for c in grid.chips}
    whole, _ = blend_chips(grid, outputs, (0, 90), (0, 130))
    part, _ = blend_chips(grid, outputs, (17, 61), (40, 129))
    np.testing.assert_array_equal(part, whole[:, 17:61, 40:129])


def test_chips_cropped_to_the_region_blend_exactly_like_whole_chips():
    rng = np.random.default_rng(1)
    grid = ChipGrid(height=90, width=130, size=32, overlap=8, batch_size=2)
    outputs = {c.index: rng.random((3, 32, 32), dtype=np.float32) for c in grid.chips}
    rows, cols = (17, 61), (40, 129)
    cropped = {}
    for c in grid.chips_touching(rows, cols):  # what a later block needs: its share only
        r = (max(rows[0], c.row) - c.row, min(rows[1], c.row + 32) - c.row)
        k = (max(cols[0], c.col) - c.col, min(cols[1], c.col + 32) - c.col)
        cropped[c.index] = ChipPart.crop(outputs[c.index], r, k)
    assert any(p.data.shape != (3, 32, 32) for p in cropped.values())
    np.testing.assert_array_equal(
        blend_chips(grid, cropped, rows, cols)[0], blend_chips(grid, outputs, rows, cols)[0]
    )


def test_skipped_chips_leave_their_own_pixels_uncovered():
    grid = ChipGrid(height=64, width=128, size=64, overlap=0, batch_size=2)
    outputs = {0: np.ones((1, 64, 64), np.float32), 1: None}
    _, covered = blend_chips(grid, outputs, (0, 64), (0, 128))
    assert covered[:, :64].all() and not covered[:, 64:].any()


def test_blocks_cover_the_output_exactly_once():
    seen = np.zeros((1000, 1300), int)
    for strip in blocks(1000, 1300, 512):
        for b in strip:
            seen[b.row : b.row + b.height, b.col : b.col + b.width] += 1
    assert (seen == 1).all()


def test_axis_map_identity_and_downsampling():
    same = AxisMap(out_length=10, model_length=10)
    lo, hi, w = same.taps(0, 10)
    assert (lo == np.arange(10)).all() and (w == 0).all()
    half = AxisMap(out_length=10, model_length=5)
    lo, hi, w = half.taps(0, 10)
    assert lo.min() == 0 and hi.max() == 4
    assert half.model_range(0, 10) == (0, 5)


def test_packed_chip_outputs_keep_palette_colours_exact_and_probabilities_close():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (3, 32, 32)).astype(np.float32) / 255  # a palette render
    probs = rng.dirichlet(np.ones(5), size=(32, 32)).transpose(2, 0, 1).astype(np.float32)
    packed = pack_chip_output(colours, probs)
    assert packed.dtype == np.uint8 and packed.shape == (8, 32, 32)
    assert np.array_equal(packed[:3], np.rint(colours * 255).astype(np.uint8))
    assert np.abs(packed[3:] / 255 - probs).max() <= 0.5 / 255 + 1e-6


def test_first_argmax_matches_numpy_including_ties():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, (5, 64, 64)).astype(np.float32)  # many ties
    assert np.array_equal(first_argmax(values), values.argmax(axis=0))


def test_the_block_schedule_computes_each_chip_once_and_keeps_what_later_groups_blend():
    from geo2map.schedule import BlockSchedule
    from geo2map.tiling import blocks

    grid = ChipGrid(height=300, width=700, size=64, overlap=16, batch_size=3)

    class Plan:  # on the model grid: a block's model region is the block
        chips = grid

        def model_region(self, b):
            return (b.row, b.row + b.height), (b.col, b.col + b.width)

        def chips_for(self, b):
            return grid.chips_touching(*self.model_region(b))

    todo = [b for strip in blocks(300, 700, 128) for b in strip]
    schedule = BlockSchedule.build(Plan(), todo, group_size=2)
    assert sorted(c for batch in schedule.batches for c in batch) == list(range(len(grid.chips)))
    assert all(0 < len(batch) <= 3 for batch in schedule.batches)
    first_group = {}  # batch -> the group that computes it: the first that blends it
    for g in range(len(schedule.groups)):
        for b in schedule.batches_of_group(g):
            first_group.setdefault(b, g)
    for b, batch in enumerate(schedule.batches):
        # a batch holds chips that its group is the first to need, and none for a later one
        assert all(min(g for g, _ in schedule.uses[c]) == first_group[b] for c in batch)
        assert schedule.last_group[b] == max(g for c in batch for g, _ in schedule.uses[c])
        g = first_group[b]
        kept = schedule.cut_after(b, g, computed_in_g=True)
        for c in batch:  # what is carried past g covers every later use of the chip
            later = [box for group, box in schedule.uses[c] if group > g]
            assert (c in kept) == bool(later)
            for (r0, r1), (c0, c1) in later:
                (kr0, kr1), (kc0, kc1) = kept[c]
                assert kr0 <= r0 and r1 <= kr1 and kc0 <= c0 and c1 <= kc1
