"""The two kinds of failure the CLI reports, each as one line on stderr."""

from __future__ import annotations


class CliError(Exception):
    """A failure reported as one line on stderr, ending the command with `exit_code`."""

    exit_code = 1


class UsageError(CliError):
    """The command line itself is wrong: bad flag, bad value, or a combination we refuse."""

    exit_code = 2


class EnvironmentProblem(CliError):
    """The command line is fine but the host is not: no engine, no image, no GPU runtime..."""

    exit_code = 1
