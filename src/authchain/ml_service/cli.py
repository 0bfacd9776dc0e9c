"""`authchain model ...` and `authchain ml-service`: what the ML commands show while they work
(a progress bar) and the service's runner. The work itself is the library's:
`ml_service/owner.py` trains, makes evidence and verifies; `ml_service/report.py` prints.

Imported lazily by `authchain.cli`, so the chain commands never load torch.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from authchain.ml_service.owner import OnStep
from authchain.settings import ConfigError

err = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[OnStep]:
    """A progress bar on stderr for the duration; yields the `on_step` that advances it."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task(label, total=None, info="")

    def on_step(step: int, total: int, losses: dict[str, float]) -> None:
        info = " ".join(f"{k}={v:.3f}" for k, v in losses.items())
        progress.update(task, completed=step, total=total, info=info)

    with progress:
        yield on_step


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_service(config: Path | None, listen: str | None, log_level: str) -> None:
    """Run the ML service until SIGINT/SIGTERM, then exit cleanly (status 0)."""
    import asyncio

    from authchain.ml_service.config import load_ml_settings
    from authchain.ml_service.main import create_app
    from authchain.web import serve_until_signalled

    overrides = {"listen_addr": listen} if listen is not None else {}
    settings = load_ml_settings(config, **overrides)
    host = settings.listen_addr.rpartition(":")[0].strip("[]")
    if settings.upload_token is None and not _loopback(host):
        raise ConfigError(
            f"listen_addr {settings.listen_addr} is reachable beyond this machine: set "
            "upload_token (ML_SERVICE_UPLOAD_TOKEN) so that strangers cannot upload"
        )
    from authchain.ml_service.peer_auth import PeerKeyError

    try:
        app = create_app(settings)
    except PeerKeyError as exc:
        raise ConfigError(f"peer_auth.key_file: {exc}") from exc
    log = logging.getLogger(__name__)
    log.info(
        "ML service on http://%s (models %s, evidence %s, device %s)",
        settings.listen_addr, settings.model_root, settings.evidence_root,
        app.state.service.verifier.device,
    )  # fmt: skip
    auth = settings.peer_auth
    log.info(
        "evidence is served to %d validator key(s) of chain %s; fetches from %d peer(s) are %s",
        len(auth.validators), auth.chain_id, len(settings.peers),
        "signed" if auth.key_file else "unsigned (peers will not send evidence)",
    )  # fmt: skip

    asyncio.run(serve_until_signalled([(app, settings.listen_addr)], log_level))
