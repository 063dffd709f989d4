"""The ABR ladder: which lower renditions a broadcast's video is transcoded into.

A `Rung` is one encoding target (size, frame-rate cap, bit rate, H.264 profile). The default
ladder is Twitch's. `ladder_for` picks the rungs a source gets: only rungs strictly smaller
than the source (the source itself passes through as the top rendition; nothing is
upscaled), each sized to the source's aspect ratio with even dimensions (4:2:0 chroma).
`parse_ladder` reads a ladder from settings or an admin form, with errors that name the
offending rung; `format_ladder` writes one back as that text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

# x264 profiles a browser's MSE decodes everywhere; Main is what the default ladder uses.
PROFILES = ("baseline", "main", "high")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_SIDE = 4096
_MAX_FPS = 120
_MIN_BITRATE = 32_000
_MAX_BITRATE = 50_000_000
_MAX_RUNGS = 8
# The text of a ladder of no rungs (source only), where blank means "the default".
SOURCE_ONLY = "none"


class LadderError(ValueError):
    """A ladder (or one of its rungs) is not usable; the message names which and why."""


@dataclass(frozen=True, slots=True)
class Rung:
    """One transcoded rendition's encoding target.

    ``height`` is the rung's nominal height in pixels; ``width`` its nominal width (for a
    16:9 source; `ladder_for` recomputes it from the source's aspect ratio). ``fps`` is a
    cap, in frames/s: a source at or below it keeps every frame, a faster one is thinned.
    ``bitrate`` is the video bit rate in bits/s (x264's ABR target; the VBV peak is set
    from it). ``profile`` is the H.264 profile.
    """

    name: str
    width: int
    height: int
    fps: int
    bitrate: int
    profile: str = "main"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise LadderError(f"rung name {self.name!r} must be 1-64 of [A-Za-z0-9_.-]")
        for field_name, value, low, high in (
            ("width", self.width, 2, _MAX_SIDE),
            ("height", self.height, 2, _MAX_SIDE),
            ("fps", self.fps, 1, _MAX_FPS),
            ("bitrate", self.bitrate, _MIN_BITRATE, _MAX_BITRATE),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise LadderError(
                    f"rung {self.name!r}: {field_name} {value!r} must be an integer in "
                    f"[{low}, {high}]"
                )
        if self.width % 2 or self.height % 2:
            raise LadderError(
                f"rung {self.name!r}: {self.width}x{self.height} must have even sides (4:2:0)"
            )
        if self.profile not in PROFILES:
            raise LadderError(
                f"rung {self.name!r}: profile {self.profile!r} is not one of {', '.join(PROFILES)}"
            )


# Twitch's transcode ladder (https://help.twitch.tv/s/article/broadcast-guidelines, the
# "Transcoding options" table), H.264 Main throughout.
DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("720p30", 1280, 720, 30, 2_400_000),
    Rung("480p30", 852, 480, 30, 1_400_000),
    Rung("360p30", 640, 360, 30, 630_000),
    Rung("160p30", 284, 160, 30, 230_000),
)


def ladder_for(source_width: int, source_height: int, rungs: Sequence[Rung]) -> list[Rung]:
    """The rungs a ``source_width``x``source_height`` source is transcoded into, largest
    first: those strictly shorter than the source, each sized to the source's aspect
    ratio (`_width_for`). Raises LadderError for a source size that is not
    positive."""
    if source_width <= 0 or source_height <= 0:
        raise LadderError(f"source size {source_width}x{source_height} is not positive")
    chosen = [rung for rung in rungs if rung.height < source_height]
    chosen.sort(key=lambda rung: rung.height, reverse=True)
    return [replace(rung, width=_width_for(rung, source_width, source_height)) for rung in chosen]


def _width_for(rung: Rung, source_width: int, source_height: int) -> int:
    """The rung's own width when the source has its shape (within 0.5 %: Twitch's 852x480
    and 284x160 are 16:9 rounded its way), else the nearest even width to the source's."""
    source_aspect = source_width / source_height
    if abs(rung.width / rung.height / source_aspect - 1) <= 0.005:
        return rung.width
    return max(2, round(rung.height * source_aspect / 2) * 2)


def parse_ladder(value: str | Iterable[Any]) -> tuple[Rung, ...]:
    """A ladder from settings or an admin form.

    Accepts a string of comma- or newline-separated rungs ``NAME:WIDTHxHEIGHT@FPS:BITRATE``
    (bit rate in bits/s, or with a ``k``/``M`` suffix, optional ``:PROFILE``), e.g.
    ``"720p30:1280x720@30:2400k, 360p30:640x360@30:630k"``, or a list of such strings, of
    `Rung`s, or of mappings with the `Rung` fields. The empty string or list, and the word
    ``none`` (`SOURCE_ONLY`, any case), are a ladder of no rungs (source only). Raises
    LadderError naming the first bad rung; names must be unique and no two rungs may share
    a height (the multivariant playlist could not tell them apart).
    """
    items: list[Any]
    if isinstance(value, str) and value.strip().lower() == SOURCE_ONLY:
        items = []
    elif isinstance(value, str):
        items = [item.strip() for item in re.split(r"[,\n]", value) if item.strip()]
    else:
        items = list(value)
    if len(items) > _MAX_RUNGS:
        raise LadderError(f"a ladder has at most {_MAX_RUNGS} rungs, got {len(items)}")
    rungs = tuple(_parse_rung(item, position) for position, item in enumerate(items, 1))
    _check_distinct(rungs)
    return rungs


_RUNG_TEXT = re.compile(
    r"^(?P<name>[^:\s]+):(?P<width>\d+)x(?P<height>\d+)@(?P<fps>\d+):"
    r"(?P<bitrate>\d+(?:\.\d+)?)(?P<unit>[kKmM]?)(?::(?P<profile>\w+))?$"
)


def _parse_rung(item: Any, position: int) -> Rung:
    if isinstance(item, Rung):
        return item
    try:
        if isinstance(item, str):
            return _rung_from_text(item)
        if isinstance(item, Mapping):
            return Rung(**item)
    except TypeError as error:  # a mapping with missing or unknown fields
        raise LadderError(f"rung {position}: {error}") from None
    except LadderError as error:
        raise LadderError(f"rung {position}: {error}") from None
    raise LadderError(f"rung {position}: {item!r} is not a rung (text, mapping or Rung)")


def _rung_from_text(text: str) -> Rung:
    match = _RUNG_TEXT.match(text.strip())
    if match is None:
        raise LadderError(
            f"{text!r} does not read as NAME:WIDTHxHEIGHT@FPS:BITRATE[:PROFILE] "
            "(e.g. 720p30:1280x720@30:2400k)"
        )
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match["unit"].lower()]
    return Rung(
        name=match["name"],
        width=int(match["width"]),
        height=int(match["height"]),
        fps=int(match["fps"]),
        bitrate=round(float(match["bitrate"]) * scale),
        profile=(match["profile"] or "main").lower(),
    )


def format_ladder(rungs: Sequence[Rung]) -> str:
    """``rungs`` as `parse_ladder` text (which reads it back to the same rungs); a ladder of
    no rungs is `SOURCE_ONLY`."""
    if not rungs:
        return SOURCE_ONLY
    return ", ".join(_rung_text(rung) for rung in rungs)


def _rung_text(rung: Rung) -> str:
    bitrate = f"{rung.bitrate // 1000}k" if rung.bitrate % 1000 == 0 else str(rung.bitrate)
    profile = "" if rung.profile == "main" else f":{rung.profile}"
    return f"{rung.name}:{rung.width}x{rung.height}@{rung.fps}:{bitrate}{profile}"


def _check_distinct(rungs: Sequence[Rung]) -> None:
    names: set[str] = set()
    heights: set[int] = set()
    for rung in rungs:
        if rung.name in names:
            raise LadderError(f"rung name {rung.name!r} appears twice")
        if rung.height in heights:
            raise LadderError(f"two rungs are {rung.height} pixels high ({rung.name!r})")
        names.add(rung.name)
        heights.add(rung.height)
