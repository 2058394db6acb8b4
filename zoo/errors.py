"""Errors the zoo raises for bad input a user can fix."""


class ZooError(ValueError):
    """Bad input a user can fix: a bad file, flag or parameter.

    The message is one line that names the problem, the value received and
    what to do. The command line prints it as ``digits-zoo: error: <message>``
    and exits with status 2.
    """


class DataError(ZooError):
    """A dataset file that cannot be used: unreadable, malformed or too small."""
