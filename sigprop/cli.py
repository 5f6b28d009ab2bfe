"""The ``sigprop`` command line (typer + rich).

Every sub-command lives in :mod:`sigprop.commands`; this module builds the app and turns bad input into
exit code 2 with one clear line (never a traceback).
"""

from __future__ import annotations

import importlib
import sys

import click
import typer

try:  # typer ≥ 0.2x vendors click; older typer re-uses the click package
    from typer._click import exceptions as _tce  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the typer version
    _tce = click.exceptions

_NO_ARGS = tuple({click.exceptions.NoArgsIsHelpError, getattr(_tce, "NoArgsIsHelpError", click.exceptions.NoArgsIsHelpError)})
_EXIT = tuple({click.exceptions.Exit, typer.Exit})
_ABORT = tuple({click.exceptions.Abort, typer.Abort})
_CLICK_ERR = tuple({click.ClickException, _tce.ClickException})

from sigprop.commands import MODULES

app = typer.Typer(
    name="sigprop",
    help="Will this transformer initialisation train? Rank collapse vs entropy collapse at initialisation "
    "(REM signal-propagation theory), checked against PyTorch models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _name in MODULES:
    try:
        _mod = importlib.import_module(f"sigprop.commands.{_name}")
    except ModuleNotFoundError as _exc:  # a command module not written yet / optional extra missing
        if _exc.name and _exc.name.startswith("sigprop.commands"):
            continue
        raise
    _mod.register(app)


class UsageFailure(Exception):
    """Raised by commands for bad arguments: printed as one line, exit code 2."""


def fail(message: str) -> None:
    """Print ``error: message`` to stderr and exit with code 2."""
    raise UsageFailure(message)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app in non-standalone mode so every error becomes one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = app(args=args, standalone_mode=False, prog_name="sigprop")
    except _NO_ARGS as exc:
        click.echo(exc.ctx.get_help() if getattr(exc, "ctx", None) else str(exc))
        return 0
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORT:
        click.echo("interrupted", err=True)
        return 130
    except _CLICK_ERR as exc:  # bad option, missing argument, ...
        click.echo(f"error: {exc.format_message()}".replace("\n", " "), err=True)
        return 2
    except (UsageFailure, ValueError) as exc:
        click.echo(f"error: {exc}".replace("\n", " "), err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted (partial results, if any, were written atomically; rerun to resume)", err=True)
        return 130
    return int(rv or 0) if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
