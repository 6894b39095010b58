"""What a foreground `shipyard launch` shows: a live line while queued, then every
rank's output with its name in front, then the outcome."""

from __future__ import annotations

import sys
import threading
import time

from rich.console import Console
from rich.status import Status

from shipyard.api.vocab import Phase
from shipyard.local.store import RunStatus

_COLORS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]


class ConsoleReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.color = sys.stdout.isatty()
        self._lock = threading.Lock()
        self._spinner: Status | None = None
        self._since = time.monotonic()
        self._width = 0
        self._colors: dict[str, int] = {}

    def waiting(self, status: RunStatus) -> None:
        text = (
            f"[yellow]{status.phase}[/yellow] {status.id} "
            f"(position {status.position or '?'}, waited {time.monotonic() - self._since:.0f}s): "
            f"{status.message}"
        )
        if self._spinner is None:
            self._spinner = self.console.status(text)
            self._spinner.start()
        else:
            self._spinner.update(text)

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
            self._since = time.monotonic()

    def event(self, status: RunStatus, text: str) -> None:
        with self._lock:
            self._stop_spinner()
            self.console.print(f"[bold]shipyard[/bold] {status.id}: {status.phase}: {text}",
                               highlight=False)
            if status.phase == Phase.RUNNING:
                self._width = max((len(r) for r in status.ranks), default=0)

    def line(self, rank: str, text: str) -> None:
        prefix = f"[{rank}]".ljust(self._width + 2)
        if self.color:
            code = self._colors.setdefault(rank, _COLORS[len(self._colors) % len(_COLORS)])
            prefix = f"\x1b[{code}m{prefix}\x1b[0m"
        with self._lock:
            sys.stdout.write(f"{prefix} {text}\n")
            sys.stdout.flush()
