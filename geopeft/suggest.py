"""Hints for misspelt names in error messages."""

import difflib
from collections.abc import Iterable


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """A `` Did you mean "x"?`` hint for a misspelt choice, or ``''``.

    Args:
        value: What was given.
        choices: What is accepted.

    Returns:
        The hint, with a leading space, or an empty string.
    """
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f' Did you mean "{close[0]}"?' if close else ''
