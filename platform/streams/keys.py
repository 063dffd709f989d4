"""Stream keys: generation, hashing, constant-time checking and redaction.

A key looks like ``gl_<prefix>_<secret>``. The prefix (8 characters) is public: it is
stored in clear to find the key's row and may appear in logs and the admin. The whole key
is stored only as its SHA-256 digest. Keys carry about 165 bits of randomness, so a fast
hash is enough (slow hashes are for guessable passwords) and no pepper is mixed in, which
lets SECRET_KEY rotate without invalidating every streamer's OBS settings.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
SECRET_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"  # noqa: S105 (an alphabet, not a secret)
PREFIX_LENGTH = 8
SECRET_LENGTH = 32
# Nothing longer than this is ever hashed or looked up: the ingest passes wire input here.
MAX_KEY_LENGTH = 128

KEY_PATTERN = re.compile(
    rf"gl_(?P<prefix>[{PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})_(?P<secret>[{SECRET_ALPHABET}]{{{SECRET_LENGTH}}})"
)
# Wider than a valid key on purpose: a mistyped or truncated key is still a secret.
_REDACT_PATTERN = re.compile(r"gl_([A-Za-z0-9]{1,16})_[A-Za-z0-9]{6,}")
_DUMMY_DIGEST = hashlib.sha256(b"golive-no-such-key").hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key. ``plaintext`` is shown to the streamer once, then dropped."""

    plaintext: str
    prefix: str
    digest: str


def generate_key() -> NewKey:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))
    plaintext = f"gl_{prefix}_{secret}"
    return NewKey(plaintext=plaintext, prefix=prefix, digest=digest_of(plaintext))


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def find_prefix(candidate: str) -> str | None:
    """The public prefix of a well-formed key, or None for anything else (no DB needed)."""
    if len(candidate) > MAX_KEY_LENGTH:
        return None
    match = KEY_PATTERN.fullmatch(candidate)
    return match.group("prefix") if match else None


def matches(candidate: str, digest: str | None) -> bool:
    """Constant-time check of a candidate key against a stored digest.

    With ``digest=None`` (no row for the prefix) the same work is done against a dummy,
    so a miss and a wrong secret take the same time.
    """
    expected = digest if digest is not None else _DUMMY_DIGEST
    ok = hmac.compare_digest(digest_of(candidate[:MAX_KEY_LENGTH]), expected)
    return ok and digest is not None


def redact(text: str) -> str:
    """Replaces anything shaped like a stream key with its prefix and a marker."""
    if "gl_" not in text:
        return text
    return _REDACT_PATTERN.sub(lambda m: f"gl_{m.group(1)}_[redacted]", text)
