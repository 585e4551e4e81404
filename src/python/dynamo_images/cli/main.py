"""Entry point of `dynamo-images`: argument parsing, dispatch, and one-line error reporting."""

from __future__ import annotations

import argparse
import re
import sys
from typing import NoReturn

from dynamo_images.cli import build, layers, run
from dynamo_images.cli.errors import CliError, UsageError

PROGRAM = "dynamo-images"
COMMANDS = ("run", "build", "inspect")
# Everything after the first `--` is the container command (run.sh's convention).
COMMAND_SEPARATOR = "--"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that raises UsageError with upstream-style wording instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_reword_argparse_message(message))


def _reword_argparse_message(message: str) -> str:
    expected = re.match(r"argument (\S+?)(?:/\S+)?: expected one argument$", message)
    if expected:
        return f"{expected[1]} requires an argument"
    unrecognized = re.match(r"unrecognized arguments: (\S+)", message)
    if unrecognized:
        return f"unknown option: {unrecognized[1]}"
    bad_command = re.match(r"argument command: invalid choice: '([^']*)'", message)
    if bad_command:
        return f"unknown command '{bad_command[1]}'; accepted: {', '.join(COMMANDS)}"
    if message.startswith("the following arguments are required: command"):
        return f"give a command: {', '.join(COMMANDS)}"
    flag_problem = re.match(r"argument (\S+?)(?:/\S+)?: (.*)$", message)
    if flag_problem:
        return f"{flag_problem[1]}: {flag_problem[2]}"
    return message


def make_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(
        prog=PROGRAM,
        description="Build and run NVIDIA Dynamo images (replaces upstream's build.sh and run.sh).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    run.add_arguments(
        commands.add_parser(
            "run",
            help="run an image with upstream run.sh's options",
            description="Run a Dynamo image. Put the container command after `--`.",
            allow_abbrev=False,
        )
    )
    build.add_arguments(
        commands.add_parser(
            "build",
            help="build an image through ./pants package",
            description="Build a Dynamo image with Pants, accepting upstream build.sh's flags.",
            allow_abbrev=False,
        )
    )
    layers.add_arguments(
        commands.add_parser(
            "inspect",
            help="print an image's layers: size, distributions or paths, sharing",
            description="The per-layer report of an image in the local Docker engine.",
            allow_abbrev=False,
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if COMMAND_SEPARATOR in arguments:
        split_at = arguments.index(COMMAND_SEPARATOR)
        arguments, container_command = arguments[:split_at], arguments[split_at + 1 :]
    else:
        container_command = None
    try:
        args = make_parser().parse_args(arguments)
        if args.command == "run":
            return run.command(args, container_command or [])
        if container_command is not None:
            raise UsageError(f"{args.command} takes no command after --")
        if args.command == "inspect":
            return layers.command(args)
        return build.command(args)
    except CliError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
