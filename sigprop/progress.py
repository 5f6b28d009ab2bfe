"""One progress bar for long jobs (training steps, sweep points): rich on stderr, or a no-op."""

from __future__ import annotations


class NoBar:
    """Stand-in when progress display is off."""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def advance(self, status: str = "") -> None:
        pass

    def set(self, done: int) -> None:
        pass


class Bar(NoBar):
    """``label ━━━ done/total status elapsed remaining``; ``advance(status)`` moves one step, ``set(done)``
    jumps to a count."""

    def __init__(self, label: str, total: int, done: int = 0) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.p.add_task(label, total=total, completed=done, status="")

    def __enter__(self):
        self.p.start()
        return self

    def __exit__(self, *a):
        self.p.stop()
        return False

    def advance(self, status: str = "") -> None:
        self.p.update(self.task, advance=1, status=status)

    def set(self, done: int) -> None:
        """Show ``done`` steps complete (for callers that report a count rather than single steps)."""
        self.p.update(self.task, completed=done)


def bar(enabled: bool, label: str, total: int, done: int = 0) -> NoBar:
    """A :class:`Bar` when ``enabled``, else a :class:`NoBar`."""
    return Bar(label, total, done) if enabled else NoBar()
