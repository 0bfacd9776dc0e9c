"""`authchain watch`: an owner's lookout. It follows newly committed registrations, checks
each one locally against the owner's unspent spare watermarks, and files a dispute when one
carries a spare.

    watcher = Watcher(gw, ml, key, ModelFiles.in_dir(Path("out")))
    for event in watcher.tick():     # once per poll; each event is one line for the log
        print(event)

A registration is checked once (by its tx hash): its artefact (public) is fetched from the ML
service and every unspent spare's triggers go through it in one forward pass, plus the
signature reads (`ml_service.owner.carried_spares`). Registrations of the owner himself, those
before his model (a dispute needs the earlier registration to be his) and overturned ones
are skipped. Nothing is revealed unless a spare is carried; then that spare's evidence goes to
the validators with the dispute (`client.file_dispute`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from authchain.chain import crypto
from authchain.chain.types import Aid
from authchain.client import ClientError, GatewayClient, MlServiceClient, ModelFiles, file_dispute
from authchain.floors import DEFAULT_FLOORS, Floors

log = logging.getLogger(__name__)


@dataclass
class WatchStats:
    """What the watcher did so far, for its status line."""

    checked: int = 0
    skipped: int = 0
    disputed: int = 0
    upheld: int = 0
    last_height: int = 0

    def line(self) -> str:
        return (
            f"watching · checked {self.checked} · skipped {self.skipped} · disputes "
            f"{self.disputed} ({self.upheld} upheld) · last height {self.last_height}"
        )


@dataclass
class Watcher:
    """Checks new registrations against the owner's spares, and disputes copies."""

    gw: GatewayClient
    ml: MlServiceClient
    key: crypto.KeyPair
    files: ModelFiles
    floors: Floors = DEFAULT_FLOORS
    batch: int = 100
    """Committed registrations read per poll (the newest)."""
    stats: WatchStats = field(default_factory=WatchStats)
    seen: set[str] = field(default_factory=set)

    def tick(self) -> list[str]:
        """One poll: check every committed registration not seen yet; the log lines."""
        from authchain.ml_service.owner import carried_spares  # torch loads here, once

        mine = self.gw.model(self.files.aid)
        events: list[str] = []
        for claim in reversed(self.gw.claims(status="committed", limit=self.batch)):
            if str(claim.tx_hash) in self.seen:
                continue
            self.seen.add(str(claim.tx_hash))
            self.stats.last_height = max(self.stats.last_height, claim.height)
            if claim.owner == self.key.account or claim.aid == mine.aid:
                continue
            suspect = self.gw.model(claim.aid)
            if suspect.status == "overturned" or suspect.registered_at < mine.registered_at:
                self.stats.skipped += 1
                events.append(f"skipped {claim.aid.short()}: overturned or registered first")
                continue
            unspent = [i for i in range(len(mine.spares)) if i not in mine.spent_spares]
            if not unspent:
                events.append("no unspent spare is left: nothing more can be disputed")
                return events
            with tempfile.TemporaryDirectory() as tmp:
                copy = self.ml.download_artefact(claim.aid, Path(tmp) / "suspect.safetensors")
                found = carried_spares(copy, [self.files.spares[i] for i in unspent], self.floors)
            self.stats.checked += 1
            carried = [i for i, (hit, _) in zip(unspent, found, strict=True) if hit]
            best = min(found, key=lambda f: f[1])[1] if found else ""
            events.append(
                f"checked {claim.aid.short()} (height {claim.height}): "
                + (f"carries spare {carried[0]}: {found[unspent.index(carried[0])][1]}"
                   if carried else f"no spare ({best})")
            )  # fmt: skip
            if carried:
                events.append(self._dispute(claim.aid, carried[0]))
                mine = self.gw.model(self.files.aid)
        return events

    def _dispute(self, suspect: Aid, spare: int) -> str:
        self.stats.disputed += 1
        try:
            done = file_dispute(
                self.gw, self.key, self.files, suspect, upload_to=self.ml, spare_index=spare
            )
        except ClientError as exc:
            return f"dispute of {suspect.short()} refused: {exc}"
        if done.verdict is not None and done.verdict.upheld:
            self.stats.upheld += 1
            return f"dispute {done.tx_hash[:12]} upheld: {suspect.short()} is overturned"
        reason = done.verdict.reason if done.verdict else getattr(done.status, "reason", "")
        return f"dispute {done.tx_hash[:12]} of {suspect.short()} failed: {reason}"
