"""Entry point of the `astrogan` command: builds the Typer app and turns user errors into one line."""

from __future__ import annotations

import importlib
import os
import sys

import typer

app = typer.Typer(
    name="astrogan",
    help="Turn pictures of the sky into generative models of the sky, and back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; command bodies import heavy libraries lazily.
_COMMAND_MODULES = (
    "dataset",
    "train",
    "sample",
    "inspect",
    "demo",
    "fetch",
    "synth",
    "evaluate",
    "export",
    "serve",
    "downstream",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"astrogan.cli.{_name}").register(app)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """astrogan: datasets, GAN training, sampling, metrics, export and a web page for sky images."""
    if version:
        from astrogan._version import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user mistakes print `error: ...` on one line and exit with status 2."""
    from astrogan.utils.errors import Interrupted, UserError
    from astrogan.utils.log import one_line_warnings

    try:
        with one_line_warnings():  # a warning is one line too, not Python's file:line and source line
            code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:  # --help, --version, explicit exits
        return int(exc.exit_code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Interrupted as exc:  # stopped cleanly by a signal, after saving
        typer.echo(str(exc), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("ASTROGAN_DEBUG") == "1":
            raise
        typer.echo(f"error: {_one_line(exc)}", err=True)
        return 2
    except Exception as exc:
        # Click's usage errors (Typer vendors click, so match by shape, not by class).
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return int(exc.exit_code)
        raise
    # Non-standalone Typer returns the code of an Exit instead of raising it, and turns Ctrl-C into Exit(130).
    if code == 130:
        typer.echo("interrupted", err=True)
    return code if isinstance(code, int) else 0


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file or directory: {exc.filename}"
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
