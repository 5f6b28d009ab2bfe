"""CLI sub-commands: one module per group of commands, each defining ``register(app: typer.Typer) -> None``
(parse the options → call the library → render). :mod:`sigprop.cli` imports them and registers them in the
order of ``sigprop.cli.COMMAND_MODULES``. The spec options are declared once, in :mod:`sigprop.commands.options`.
A module whose optional dependencies are missing still registers its commands (they import those dependencies
when run) and reports the missing extra in one line."""
