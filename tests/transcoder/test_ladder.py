"""The ABR ladder: which rungs a source gets, and reading a ladder from settings."""

from __future__ import annotations

import pytest

from transcoder.ladder import (
    DEFAULT_LADDER,
    LadderError,
    Rung,
    format_ladder,
    ladder_for,
    parse_ladder,
)


def sizes(rungs: list[Rung]) -> list[tuple[str, int, int]]:
    return [(rung.name, rung.width, rung.height) for rung in rungs]


def test_default_ladder_is_twitchs_main_profile_ladder() -> None:
    assert [(r.name, r.width, r.height, r.fps, r.bitrate, r.profile) for r in DEFAULT_LADDER] == [
        ("720p30", 1280, 720, 30, 2_400_000, "main"),
        ("480p30", 852, 480, 30, 1_400_000, "main"),
        ("360p30", 640, 360, 30, 630_000, "main"),
        ("160p30", 284, 160, 30, 230_000, "main"),
    ]


def test_a_1080p_source_gets_all_four_rungs() -> None:
    assert sizes(ladder_for(1920, 1080, DEFAULT_LADDER)) == [
        ("720p30", 1280, 720),
        ("480p30", 852, 480),
        ("360p30", 640, 360),
        ("160p30", 284, 160),
    ]


def test_a_720p_source_is_never_upscaled_nor_repeated() -> None:
    assert [r.name for r in ladder_for(1280, 720, DEFAULT_LADDER)] == ["480p30", "360p30", "160p30"]


def test_a_source_at_or_below_the_lowest_rung_gets_no_rung() -> None:
    assert ladder_for(284, 160, DEFAULT_LADDER) == []
    assert ladder_for(200, 112, DEFAULT_LADDER) == []


def test_rungs_keep_the_source_aspect_ratio_with_even_sides() -> None:
    rungs = ladder_for(640, 480, DEFAULT_LADDER)  # 4:3
    assert sizes(rungs) == [("360p30", 480, 360), ("160p30", 214, 160)]
    portrait = ladder_for(1080, 1920, DEFAULT_LADDER)  # 9:16: heights still rule
    assert sizes(portrait)[0] == ("720p30", 404, 720)
    for rung in rungs + portrait:
        assert rung.width % 2 == 0
        assert rung.height % 2 == 0


def test_rungs_come_out_largest_first_whatever_the_order_given() -> None:
    assert [r.height for r in ladder_for(1920, 1080, DEFAULT_LADDER[::-1])] == [720, 480, 360, 160]


def test_a_ladder_reads_from_settings_text() -> None:
    ladder = parse_ladder(
        "720p30:1280x720@30:2400k, 360p30:640x360@30:0.63M\n160p:284x160@15:230000:baseline"
    )
    assert ladder == (
        Rung("720p30", 1280, 720, 30, 2_400_000),
        Rung("360p30", 640, 360, 30, 630_000),
        Rung("160p", 284, 160, 15, 230_000, "baseline"),
    )


def test_a_ladder_reads_from_a_list_of_mappings_or_rungs() -> None:
    ladder = parse_ladder(
        [
            {"name": "480p", "width": 852, "height": 480, "fps": 30, "bitrate": 1_400_000},
            DEFAULT_LADDER[3],
        ]
    )
    assert [r.name for r in ladder] == ["480p", "160p30"]


def test_an_empty_ladder_means_source_only() -> None:
    assert parse_ladder("") == ()
    assert parse_ladder([]) == ()
    assert parse_ladder("none") == parse_ladder(" NONE ") == ()


def test_a_ladder_written_back_reads_as_the_same_rungs() -> None:
    assert format_ladder(DEFAULT_LADDER) == (
        "720p30:1280x720@30:2400k, 480p30:852x480@30:1400k, 360p30:640x360@30:630k,"
        " 160p30:284x160@30:230k"
    )
    assert parse_ladder(format_ladder(DEFAULT_LADDER)) == DEFAULT_LADDER
    odd = parse_ladder("a:640x360@30:630500:high, b:426x240@15:2M:baseline")
    assert parse_ladder(format_ladder(odd)) == odd
    assert format_ladder(()) == "none"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("720p:1280x720:2400k", "does not read as NAME:WIDTHxHEIGHT@FPS:BITRATE"),
        ("720p:1281x720@30:2400k", "even sides"),
        ("720p:1280x720@0:2400k", "fps 0"),
        ("720p:1280x720@30:2", "bitrate 2"),
        ("720p:1280x720@30:2400k:extended", "profile 'extended'"),
        ("a:1280x720@30:2400k, a:640x360@30:630k", "'a' appears twice"),
        ("a:1280x720@30:2400k, b:1280x720@30:1000k", "two rungs are 720 pixels high"),
        ([{"name": "x", "width": 2}], "rung 1"),
        ([42], "42 is not a rung"),
        ("bad name!:640x360@30:630k", "does not read"),
    ],
)
def test_a_bad_ladder_is_refused_with_a_message_naming_the_fault(
    value: object, message: str
) -> None:
    with pytest.raises(LadderError, match=message.replace("(", r"\(")):
        parse_ladder(value)  # type: ignore[arg-type]


def test_errors_name_the_rung_by_position() -> None:
    with pytest.raises(LadderError, match="rung 2:"):
        parse_ladder("a:640x360@30:630k, b:640x361@30:630k")


def test_a_source_size_that_is_not_positive_is_refused() -> None:
    with pytest.raises(LadderError):
        ladder_for(0, 720, DEFAULT_LADDER)
