"""Resume parts: only complete blocks count as finished, whatever moment a run is killed at."""

import os

import numpy as np
import pytest

from geo2map.parts import BlockParts
from geo2map.tiling import Block

BLOCK = Block(0, 512, 512, 512)


def test_a_block_killed_mid_write_is_not_finished(tmp_path, monkeypatch):
    parts = BlockParts(tmp_path, "scene", key="a")

    def killed_before_rename(src, dst):
        raise KeyboardInterrupt  # the job dies between writing the bytes and the rename

    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        parts.save(BLOCK, np.ones((4, 512, 512), np.uint8))
    monkeypatch.undo()

    assert any(parts.dir.iterdir()), "the half-written block should be on disk"
    assert not parts.done(BLOCK)
    # Watchers (tests, users) look for finished blocks by this pattern.
    assert not list(parts.dir.glob("*_*.npy"))
    parts.remove_if_empty()
    assert not parts.dir.exists()


def test_finished_blocks_survive_a_rerun_with_the_same_settings_only(tmp_path):
    data = np.arange(3 * 512 * 512, dtype=np.uint16).reshape(3, 512, 512)
    BlockParts(tmp_path, "scene", key="a").save(BLOCK, data)

    same = BlockParts(tmp_path, "scene", key="a")
    assert same.done(BLOCK)
    np.testing.assert_array_equal(same.load(BLOCK), data)

    other = BlockParts(tmp_path, "scene", key="b")
    assert not other.done(BLOCK)
