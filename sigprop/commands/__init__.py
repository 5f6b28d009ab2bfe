"""CLI sub-commands. Each module defines ``register(app: typer.Typer) -> None``; ``sigprop.cli`` calls
them in the order of :data:`MODULES`. A module whose optional dependencies are missing still registers
its commands, and reports the missing extra in one line when run."""

MODULES = ["theory", "validate", "gradients", "train", "sweep", "diagnose"]
