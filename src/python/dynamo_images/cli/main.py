"""Entry point of `dynamo-images`: argument parsing, dispatch, and one-line error reporting."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

from dynamo_images.cli import build, diff, layers, run, sbom
from dynamo_images.cli.errors import CliError, UsageError

PROGRAM = "dynamo-images"
COMMANDS = ("run", "build", "inspect", "diff", "sbom")
# Everything after the first `--` is the container command (run.sh's convention).
COMMAND_SEPARATOR = "--"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that raises UsageError with upstream-style wording instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(_reword_argparse_message(message))


def attach_option_values(parser: argparse.ArgumentParser, arguments: list[str]) -> list[str]:
    """Join each value-taking option to its value (`-e -X=1` -> `-e=-X=1`), as upstream's scripts
    take any next word as the value. argparse would read a value that starts with "-" as an
    unknown option and report the flag's value missing; joined, the value reaches its own check,
    which names it. A next word that is one of the parser's options is left alone, so that
    `--name --rm` still says --name lacks its value."""
    takes_value: set[str] = set()
    known: set[str] = set()
    for action in parser._actions:
        known.update(action.option_strings)
        if action.option_strings and action.nargs is None:
            takes_value.update(action.option_strings)
    joined: list[str] = []
    index = 0
    while index < len(arguments):
        word = arguments[index]
        following = arguments[index + 1] if index + 1 < len(arguments) else None
        if (
            word in takes_value
            and following is not None
            and following.startswith("-")
            and following.partition("=")[0] not in known
        ):
            joined.append(f"{word}={following}")
            index += 2
            continue
        joined.append(word)
        index += 1
    return joined


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


class CommandParser(OneLineErrorParser):
    """The top-level parser, which keeps each subcommand's parser by name."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}


def make_parser() -> CommandParser:
    parser = CommandParser(
        prog=PROGRAM,
        description="Build and run NVIDIA Dynamo images (replaces upstream's build.sh and run.sh).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        subparser = commands.add_parser(name, allow_abbrev=False, **kwargs)
        parser.commands[name] = subparser
        return subparser

    run.add_arguments(
        add_command(
            "run",
            help="run an image with upstream run.sh's options",
            description="Run a Dynamo image. Put the container command after `--`.",
        )
    )
    build.add_arguments(
        add_command(
            "build",
            help="build an image through ./pants package",
            description="Build a Dynamo image with Pants, accepting upstream build.sh's flags.",
        )
    )
    layers.add_arguments(
        add_command(
            "inspect",
            help="print an image's layers: size, distributions or paths, sharing",
            description="The per-layer report of an image in the local Docker engine.",
        )
    )
    diff.add_arguments(
        add_command(
            "diff",
            help="compare two images layer by layer: what is shared, what changed and why",
            description="Which layers two local images share, and for the others what changed"
            " inside (distributions, paths) and which input (lock, commit, base) differs.",
        )
    )
    sbom.add_arguments(
        add_command(
            "sbom",
            help="print the CycloneDX SBOM an image carries",
            description="The SBOM (CycloneDX 1.6 JSON) that an image this project built carries:"
            " its wheels with their lockfile hashes, Debian packages, Go modules and our code.",
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
        parser = make_parser()
        if arguments and arguments[0] in parser.commands:
            arguments = [
                arguments[0],
                *attach_option_values(parser.commands[arguments[0]], arguments[1:]),
            ]
        args = parser.parse_args(arguments)
        if args.command == "run":
            return run.command(args, container_command or [])
        if container_command is not None:
            raise UsageError(f"{args.command} takes no command after --")
        if args.command == "inspect":
            return layers.command(args)
        if args.command == "diff":
            return diff.command(args)
        if args.command == "sbom":
            return sbom.command(args)
        return build.command(args)
    except CliError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
