"""The command-line layer shared by denoise-batch, denoise-train and denoise-export.

`app()` makes a Typer app whose commands all follow one policy (denoise_cli.core.errors): a
DenoiseError becomes `error: <message>` on stderr and its exit code; Ctrl-C becomes exit 130
instead of click's "Aborted!" and 1. `default_command` lets `denoise-batch IN OUT` run the main
command while `denoise-batch score ...` runs a subcommand, and `--help` lists them all.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Iterable
from enum import Enum
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from denoise_cli.core import __version__
from denoise_cli.core.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    DenoiseError,
    MissingDependency,
)

#: The parser's usage errors: click's, or the copy of click that typer 0.20+ carries inside.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class Terminated(KeyboardInterrupt):
    """SIGTERM, in the tools whose clean-up is Ctrl-C's (an export's staging folder, adapt's
    checkpoint): the same clean-up runs, and the exit code is 143."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def choices(name: str, values: Iterable[object]) -> Any:
    """A string Enum of `values`: how a registry becomes an option's choices in --help."""
    return Enum(name, {str(v): str(v) for v in values}, type=str)


def fail(message: str, code: int) -> None:
    """Print `error: message` and exit with `code`: for the few checks that live in a CLI."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class CommandGroup(TyperGroup):
    """Commands whose library errors become one-line messages and exit codes, in one place."""

    #: The command that arguments not naming a subcommand go to (None: no default).
    default_command: str | None = None
    #: Whether SIGTERM stops a command as Ctrl-C does (see Terminated); denoise-batch's run
    #: handles its own signals between files instead.
    sigterm_interrupts: bool = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(self.commands)  # the order they were defined in, the main one first

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        command = super().get_command(ctx, name)
        for param in command.params if command is not None else ():
            # The parser's own "Path ... is not readable" is three lines of usage text and exit
            # 2; the loaders say it in one line, with the exit code of what the file is for.
            if getattr(param.type, "readable", False):
                param.type.readable = False
        return command

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        default, first = self.default_command, args[0] if args else None
        named = [*self.commands, *self.get_help_option_names(ctx), "--version"]
        if default and first and first not in named:
            if guess := _mistyped_command(first, list(self.commands)):
                typer.echo(
                    f"error: {first}: no such command or input (did you mean {guess}?)", err=True
                )
                ctx.exit(EXIT_USAGE)
            args = [default, *args]
        elif first and not first.startswith("-") and first not in named:
            guess = _close_command(first, list(self.commands))
            hint = f"did you mean {guess}?" if guess else f"commands: {', '.join(self.commands)}"
            typer.echo(f"error: {first}: no such command ({hint})", err=True)
            ctx.exit(EXIT_USAGE)
        try:
            return super().parse_args(ctx, args)
        except _UsageError as exc:
            _usage_error(ctx, exc)

    def invoke(self, ctx: typer.Context) -> Any:
        if self.sigterm_interrupts:
            # Not the main thread (ValueError): signals are left to whoever owns them.
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except _UsageError as exc:  # a command's options or arguments, as parsed
            _usage_error(ctx, exc)
        except DenoiseError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a disk or folder failing under a command: one line, not a trace
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)
        except Terminated:
            typer.echo("\nterminated", err=True)
            ctx.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            typer.echo("\ninterrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _usage_error(ctx: typer.Context, exc: Any) -> NoReturn:
    """A parser's error in one line, like every other refusal (click prints the usage, a hint
    and the error on three): `error: <what> (usage: <command line>; -h for help)`, exit 2.
    No arguments at all still prints the help, as click does."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        raise exc
    where = exc.ctx
    if where is None and ctx.invoked_subcommand:  # a command's option, before its context
        sub = ctx.command.get_command(ctx, ctx.invoked_subcommand)  # type: ignore[attr-defined]
        where = type(ctx)(sub, info_name=ctx.invoked_subcommand, parent=ctx)
    usage = " ".join((where or ctx).get_usage().removeprefix("Usage:").split())
    message = " ".join(exc.format_message().split()).rstrip(".")
    typer.echo(f"error: {message} (usage: {usage}; -h for help)", err=True)
    ctx.exit(exc.exit_code)


def _mistyped_command(first: str, commands: list[str]) -> str | None:
    """A command `first` looks like a typo of, when no file or URI by that name exists
    (`denoise-batch scroe OUT CLEAN` was read as IN 'scroe' with too many arguments)."""
    if first.startswith("-") or "://" in first or os.path.lexists(first):
        return None
    return _close_command(first, commands)


def _close_command(first: str, commands: list[str]) -> str | None:
    """The command `first` is closest to, quoted, or None."""
    import difflib  # only here: start-up time counts for small runs

    close = difflib.get_close_matches(first, commands, n=1, cutoff=0.75)
    return f"'{close[0]}'" if close else None


def _show_version(ctx: typer.Context, value: bool) -> None:
    if value:
        typer.echo(f"{ctx.find_root().info_name} {__version__}")
        raise typer.Exit()


def _version_option(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        expose_value=False,
        help="Print the version and exit.",
    ),
) -> None:
    """The app's own options, before any command: only --version."""


def app(
    help: str, default_command: str | None = None, sigterm_interrupts: bool = False
) -> typer.Typer:
    """A Typer app of several commands under the shared error policy, with --version."""
    fields = {"default_command": default_command, "sigterm_interrupts": sigterm_interrupts}
    group = type("Group", (CommandGroup,), fields)
    return typer.Typer(
        cls=group,
        help=help,
        callback=_version_option,
        add_completion=False,
        rich_markup_mode=None,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def require(module: str, what: str, install: str) -> None:
    """Raise MissingDependency (exit 2) naming what to install when `module` is absent."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependency(f"{what} needs {module}, which is not installed: {install}")


def run_guarded(cli_module: str, needs: tuple[str, ...], prog: str, install: str) -> None:
    """Entry point of a command whose module imports heavy optional packages at the top:
    check they are installed first, so a runtime-only install gets a message, not a traceback."""
    try:
        for module in needs:
            require(module, prog, install)
    except MissingDependency as exc:  # no app runs yet: exit plainly
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    importlib.import_module(cli_module).app(prog_name=prog)


TORCH_INSTALL = "pip install torch==2.13.0 'denoise-batch[train,cpu]' (README, Installing)"
