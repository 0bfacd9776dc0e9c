"""Fork choice rules (seed `consensus::ForkChoice`)."""

from __future__ import annotations

from typing import Protocol

from authchain.chain.types import Header


class ForkChoice(Protocol):
    """Decides whether a branch head should replace the current tip."""

    def prefers(self, candidate: Header, current: Header) -> bool:
        """Whether `candidate` should become the tip instead of `current`."""
        ...


class LongestChainForkChoice:
    """The higher block wins; on a tie the tip seen first stays (no flip-flopping)."""

    def prefers(self, candidate: Header, current: Header) -> bool:
        return candidate.height > current.height
