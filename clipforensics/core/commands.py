"""Sub-commands for a script, with one of them implicit so the plain `script.py ARGS...` keeps working.

    COMMANDS = {"report": Command("evaluate scores files", add_report_args, run_report),
                "matrix": Command("cross-manipulation matrix", add_matrix_args, run_matrix)}
    command, ns = parse_command(COMMANDS, "report", argv, description=__doc__)
    command.run(ns)

or, as a script's whole `main`: `return run_command(COMMANDS, "report", argv, __doc__)`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable

from clipforensics.core.registry import SuggestingParser

HELP_FLAGS = ("-h", "--help")


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]


def build_command_parser(commands: dict[str, Command], default: str, description: str) -> argparse.ArgumentParser:
    parser = SuggestingParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", title="commands",
                                description=f"without a command name, '{default}' is meant")
    for name, command in commands.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    # `script.py --help` shows the implicit command's options too: they are what a plain call takes.
    parser.epilog = f"'{default}' (also without its name):\n\n" + sub.choices[default].format_help()
    return parser


def parse_command(commands: dict[str, Command], default: str, argv: list[str],
                  description: str = "") -> tuple[Command, argparse.Namespace]:
    """The named command and its parsed options; `default` when the first argument names no command."""
    if default not in commands:
        raise ValueError(f"default command {default!r} is not one of {', '.join(commands)}")
    if not argv or (argv[0] not in commands and argv[0] not in HELP_FLAGS):
        argv = [default, *argv]
    ns = build_command_parser(commands, default, description).parse_args(argv)
    return commands[ns.command], ns


def run_command(commands: dict[str, Command], default: str, argv: list[str] | None, description: str = "") -> int:
    """Parse `argv` (the process's own arguments when None) and run the command it names: exit code 0."""
    command, ns = parse_command(commands, default, list(sys.argv[1:] if argv is None else argv), description)
    command.run(ns)
    return 0
