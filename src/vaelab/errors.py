"""User-facing errors and the one place that turns them into exit status 2.

A :class:`UserError` is a mistake the user can fix (a bad param, missing data, a
checksum mismatch). It carries one message that says what went wrong, where, and
how to fix it. Programming errors are *not* UserErrors: they keep their traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

USER_ERROR_EXIT = 2

F = TypeVar("F", bound=Callable[..., object])


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it was raised from or during, and so on (each once): libraries wrap
    the error that matters (an OSError, a sqlite error) in their own."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class UserError(Exception):
    """An error caused by input the user controls; shown without a traceback."""


def exit_on_user_error(func: F) -> F:
    """Run ``func``; on :class:`UserError` print its message and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except UserError as err:
            print(f"vaelab: error: {err}", file=sys.stderr)
            raise SystemExit(USER_ERROR_EXIT) from None

    return wrapper  # type: ignore[return-value]
