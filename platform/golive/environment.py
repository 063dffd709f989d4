"""Reading settings from environment variables, refusing values that do not parse.

Only `golive.settings` calls these: every other module reads ``settings.X``. A bad value
stops the process at start-up with ImproperlyConfigured naming the variable, rather than
a ValueError deep in a request, or a typo such as ``DEBUG=flase`` read silently as off.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from transcoder.ladder import Rung

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})

Choice = TypeVar("Choice", bound=str)


def env(name: str, default: str = "", environ: Mapping[str, str] = os.environ) -> str:
    """The variable's value; unset and empty both mean ``default``."""
    return environ.get(name) or default


def env_is_set(name: str, environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get(name))


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={environ[name]!r}: expected one of 1/0, true/false, yes/no, on/off"
    )


def env_int(
    name: str, default: int, *, minimum: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number") from None
    _at_least(name, value, number, minimum)
    return number


def env_float(
    name: str, default: float, *, minimum: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> float:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value!r}: expected a finite number")
    _at_least(name, value, number, minimum)
    return number


def env_list(name: str, default: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Comma-separated items, blanks around them and empty items dropped."""
    text = environ.get(name) or default
    return [item.strip() for item in text.split(",") if item.strip()]


def env_choice(
    name: str, default: Choice, choices: Sequence[Choice],
    environ: Mapping[str, str] = os.environ,
) -> Choice:
    """One of ``choices``, as written (a ``Literal`` type's values keep their type)."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    for choice in choices:
        if value == choice:
            return choice
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(choices)}")


def env_ladder(name: str, environ: Mapping[str, str] = os.environ) -> tuple[Rung, ...]:
    """A transcode ladder (`transcoder.ladder.parse_ladder` text, e.g.
    ``720p30:1280x720@30:2400k, 360p30:640x360@30:630k``); unset: the default ladder."""
    from transcoder.ladder import DEFAULT_LADDER, LadderError, parse_ladder

    text = environ.get(name, "").strip()
    if not text:
        return tuple(DEFAULT_LADDER)
    try:
        return parse_ladder(text)
    except LadderError as error:
        raise ImproperlyConfigured(f"{name}={text!r}: {error}") from None


def _at_least(name: str, text: str, number: float, minimum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={text!r}: must be at least {minimum}")


def local_secret_key(path: os.PathLike[str] | str) -> str:
    """This checkout's own secret key: read from ``path``, or generated into it (mode 0600)
    the first time. Every process of the checkout (``up``, the ingest, the cluster on one
    machine, management commands) reads the same file, so they sign alike. Safe against
    several processes starting at once: the file appears whole or not at all."""
    import secrets
    import tempfile

    target = os.fspath(path)
    try:
        with open(target) as file:
            if key := file.read().strip():
                return key
    except FileNotFoundError:
        pass
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, exist_ok=True)
    descriptor, draft = tempfile.mkstemp(dir=directory, prefix=".secret-key-")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50))
        with contextlib.suppress(FileExistsError):  # another process was first: theirs
            os.link(draft, target)
    finally:
        os.unlink(draft)
    with open(target) as file:
        return file.read().strip()
