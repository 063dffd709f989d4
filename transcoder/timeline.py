"""A publisher's millisecond timeline kept continuous across its clock's jumps, shared by
the packager (each track's media time) and the transcoder (the rungs' timestamps), so a
rung's frames carry exactly the media time the source's were packaged at."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# A publisher's clock jumping forward more than this, or back more than CLOCK_BACK_MS,
# is a new clock: the timeline continues one frame step after the last timestamp.
CLOCK_JUMP_MS = 5_000
CLOCK_BACK_MS = 1_000


class Timeline:
    """A kind's millisecond timeline, kept continuous across a publisher's clock jumps."""

    __slots__ = ("last", "offset", "rebase", "step")

    def __init__(self) -> None:
        self.offset = 0
        self.last: int | None = None
        self.step = 1
        # When set, the next timestamp comes from a new publisher's clock: it is placed
        # this many ms after the last one's successor.
        self.rebase: int | None = None

    def copy(self) -> Timeline:
        """This timeline as it stands, to be continued separately (a transcode session
        joining a publish under way takes up the packager's clock)."""
        twin = Timeline()
        twin.offset, twin.last, twin.step, twin.rebase = (
            self.offset, self.last, self.step, self.rebase
        )
        return twin

    def correct(self, timestamp: int) -> int:
        t = timestamp + self.offset
        last = self.last
        if last is None:
            self.last = t
            return t
        if self.rebase is not None:
            corrected = last + self.step + self.rebase
            self.rebase = None
            self.offset += corrected - t
            self.last = corrected
            return corrected
        delta = t - last
        if delta > CLOCK_JUMP_MS or delta < -CLOCK_BACK_MS:
            corrected = last + self.step
            self.offset += corrected - t
            t = corrected
            # debug, not info: a publisher sending garbage timestamps would flood the log
            log.debug("timestamps jumped by %d ms; timeline continued", delta)
        elif delta > 0:
            self.step = delta
        if t > last:
            self.last = t
        return t
