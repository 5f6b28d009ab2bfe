"""The ``sigprop`` command line (typer + rich).

Every sub-command lives in a module of :mod:`sigprop.commands` (its spec options come from
:mod:`sigprop.commands.options`, declared once); this module builds the app from them and turns bad input into
exit code 2 with one clear line (never a traceback).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from importlib import metadata as _metadata
from pathlib import Path
from types import ModuleType

import click
import typer

from sigprop.commands import diagnose, gradients, sweep, theory, train, validate

try:  # typer ≥ 0.2x vendors click; older typer re-uses the click package
    _tce: ModuleType = importlib.import_module("typer._click.exceptions")  # by name: not in every typer
except ImportError:  # pragma: no cover - depends on the typer version
    _tce = click.exceptions

_NO_ARGS = tuple({click.exceptions.NoArgsIsHelpError, getattr(_tce, "NoArgsIsHelpError", click.exceptions.NoArgsIsHelpError)})
_EXIT = tuple({click.exceptions.Exit, typer.Exit})
_ABORT = tuple({click.exceptions.Abort, typer.Abort})
# typer's vendored ClickException has click's interface (format_message)
_CLICK_ERR: tuple[type[click.ClickException], ...] = tuple({click.ClickException, _tce.ClickException})


app = typer.Typer(
    name="sigprop",
    help="Will this transformer initialisation train? Rank collapse vs entropy collapse at initialisation "
    "(REM signal-propagation theory), checked against PyTorch models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: the command modules, in the order of `sigprop --help` (a test checks every module with a ``register`` is here)
COMMAND_MODULES = (theory, validate, gradients, train, sweep, diagnose)
for _mod in COMMAND_MODULES:
    _mod.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sigprop {_pkg_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="print the version and exit", callback=_version,
                                 is_eager=True),
) -> None:
    """App-level options only (the help shown is the Typer app's)."""


def _pkg_version() -> str:
    try:
        return _metadata.version("sigprop")
    except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


_EXCLUSIVE = (("--qk-std", "--beta"),)  # option pairs that set the same quantity


def _out_dirs(args: list[str]) -> list[str]:
    """The values given to ``--out`` (``--out X`` or ``--out=X``) anywhere in the arguments."""
    found = []
    for i, a in enumerate(args):
        if a == "--out" and i + 1 < len(args):
            found.append(args[i + 1])
        elif a.startswith("--out="):
            found.append(a.split("=", 1)[1])
    return found


def check_out_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create the output folder ``path`` if needed and check it is writable, before any work starts.

    Raises ``ValueError`` naming ``option`` when the path is a file, cannot be created or is read-only.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} must be a folder; {str(p)!r} is a file")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".sigprop-write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {str(p)!r} is not a writable folder ({exc.strerror or exc})") from None
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app in non-standalone mode so every error becomes one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if "--help" not in args and "-h" not in args:
            given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
            for a, b in _EXCLUSIVE:
                if a in given and b in given:
                    raise ValueError(f"give either {a} or {b}, not both ({a} is converted to {b})")
            for out in _out_dirs(args):  # every command checks its output folder before any work
                check_out_dir(out)
        rv = app(args=args, standalone_mode=False, prog_name="sigprop")
    except _NO_ARGS:  # typer has already printed the help once
        return 0
    except _EXIT as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORT:
        click.echo("interrupted", err=True)
        return 130
    except _CLICK_ERR as exc:  # bad option, missing argument, ...
        # typer validates Enum choices with pydantic, whose message starts "Value error, "
        click.echo(f"error: {exc.format_message()}".replace("\n", " ").replace("Value error, ", ""), err=True)
        return 2
    except ValueError as exc:
        click.echo(f"error: {exc}".replace("\n", " "), err=True)
        return 2
    except OSError as exc:  # e.g. the disk filled up or a file vanished mid-run: one line, no traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted (partial results, if any, were written atomically; rerun to resume)", err=True)
        return 130
    return int(rv or 0) if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
