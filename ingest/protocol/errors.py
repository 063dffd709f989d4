"""Every parser in `ingest.protocol` fails with one of these, whatever the input bytes."""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that cannot be parsed; the connection cannot continue safely."""


class TruncatedInput(ProtocolError):
    """A self-contained payload (a message body, an AMF value) ended before a field did."""


class LimitExceeded(ProtocolError):
    """Well-formed input that asks for more than the configured limits allow."""


class UnsupportedFeature(ProtocolError):
    """Well-formed input using a feature this implementation refuses (AMF3 externalizable
    objects, an unknown FourCC, RTMPE's version byte).

    A separate class so the session layer can skip a media tag instead of closing.
    """
