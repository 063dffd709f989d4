"""Keeps stream keys out of log output, whoever logs them and however."""

from __future__ import annotations

import logging

from streams.keys import redact


class StreamKeyRedactionFilter(logging.Filter):
    """Rewrites a record in place so no handler can print a stream key.

    Defence in depth: golive's own code never logs a key; this catches a third party
    (a library logging a URL, an exception message quoting input) that might.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
