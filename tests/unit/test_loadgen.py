"""The load generator's block arithmetic (`authchain.loadgen`), on hand-made block metas."""

from __future__ import annotations

import pytest

from authchain.loadgen import BlockMeta, largest_gap


def test_the_gap_after_block_one_is_not_a_commits() -> None:
    """Block 1's time is genesis_time, written before the network started: a fresh network
    would otherwise show its start-up as a block gap (9 s here)."""
    metas = [BlockMeta(1, 0.0, 0), BlockMeta(2, 9.0, 0), BlockMeta(3, 10.2, 5)]
    metas.append(BlockMeta(4, 11.5, 0))
    assert largest_gap(metas) == pytest.approx(1.3)
    assert largest_gap(metas[1:]) == pytest.approx(1.3)
    assert largest_gap([BlockMeta(7, 0.0, 0), BlockMeta(8, 9.0, 0)]) == pytest.approx(9.0)
    assert largest_gap(metas[:2]) == 0.0 and largest_gap([]) == 0.0
