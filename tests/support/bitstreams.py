"""Codec records crafted bit by bit: the containers (avcC, hvcC, av1C, AudioSpecificConfig,
OpusHead) and parameter sets with the fields a parser must get right."""

from __future__ import annotations

from collections.abc import Callable, Iterator


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        assert 0 <= value < 1 << n, (n, value)
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
        return self

    def flag(self, value: bool | int) -> BitWriter:
        return self.u(1, int(value))

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def zero_padded(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))

    def rbsp(self) -> bytes:
        """The bits with rbsp_trailing_bits (a stop bit, then zeros to a byte)."""
        self.flag(1)
        return self.zero_padded()


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes, as an encoder does."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def avcc(sps: bytes, pps: bytes = b"\x68\xee\x3c\x80") -> bytes:
    return (
        bytes([1, *(sps + bytes(3))[1:4], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


HVCC_MAIN_HEADER = bytes.fromhex("0101600000009000000000005df000fcfdf8f800000f")


def hvcc(header: bytes, *arrays: tuple[int, bytes]) -> bytes:
    """An hvcC with a 22-byte header and one NAL unit per (type, nal) array."""
    body = bytearray(header[:22])
    body.append(len(arrays))
    for nal_type, nal in arrays:
        body += bytes([0x80 | nal_type]) + b"\x00\x01" + len(nal).to_bytes(2, "big") + nal
    return bytes(body)


def leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def av1c(header: bytes, *obus: bytes) -> bytes:
    return header + b"".join(obus)


# Profile 0, level 4.1 (index 9) at high tier, 10-bit 4:2:0: matches full_sequence_header.
AV1C_HEADER = bytes.fromhex("8109cc00")


def sequence_header_obu(payload: bytes) -> bytes:
    return bytes([0x0A]) + leb128(len(payload)) + payload  # type 1, has_size_field


def crafted_avc_sps() -> bytes:
    w = BitWriter()
    w.u(8, 122).u(8, 0).u(8, 40).ue(0)  # High 4:2:2, level 4.0, sps id 0
    w.ue(2).ue(2).ue(2).flag(0)  # 4:2:2, 10-bit luma and chroma
    w.flag(1)  # seq_scaling_matrix_present_flag
    last = 8
    w.flag(1)  # list 0: sixteen explicit values
    for value in range(8, 24):
        w.se(((value - last + 128) % 256) - 128)
        last = value
    w.flag(1).se(-8)  # list 1: next_scale 0 at once selects the default matrix
    for _ in range(4):
        w.flag(0)
    w.flag(1)  # list 6 (8x8): ten values, then a delta to 0 repeats the last one
    last = 8
    for value in range(10, 20):
        w.se(value - last)
        last = value
    w.se(-last)
    w.flag(0)  # list 7
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(1).flag(0).se(-2).se(1).ue(3).se(2).se(2).se(-5)  # pic_order_cnt_type 1, a cycle of 3
    w.ue(4).flag(0)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    w.ue(40).ue(11)  # 41 macroblocks wide, 12 map units (24 macroblocks) high
    w.flag(0).flag(1)  # field pairs allowed, mb_adaptive_frame_field_flag
    w.flag(1)  # direct_8x8_inference_flag
    # 656x384 coded; crop 7 chroma columns (2 px each) and 11 field-pair chroma rows (2 px).
    w.flag(1).ue(0).ue(7).ue(0).ue(11)
    w.flag(1)  # vui_parameters_present_flag
    w.flag(1).u(8, 255).u(16, 4).u(16, 3)  # extended sample aspect ratio
    w.flag(1).flag(0)  # overscan
    w.flag(1).u(3, 5).flag(0).flag(1).u(8, 1).u(8, 1).u(8, 1)  # video signal, colour
    w.flag(1).ue(0).ue(0)  # chroma location
    w.flag(1).u(32, 1).u(32, 50).flag(1)  # timing: 25 frames/s, and zero bytes to escape
    w.flag(0).flag(0).flag(0).flag(0)  # no HRD, no pic_struct, no bitstream restriction
    return b"\x67" + escape(w.rbsp())


def hvcc_nals(record: bytes) -> Iterator[bytes]:
    position = 23
    for _ in range(record[22]):
        count = int.from_bytes(record[position + 1 : position + 3], "big")
        position += 3
        for _ in range(count):
            length = int.from_bytes(record[position : position + 2], "big")
            yield record[position + 2 : position + 2 + length]
            position += 2 + length


def _write_rext_profile_tier_level(w: BitWriter) -> None:
    w.u(2, 0).flag(0).u(5, 4).u(32, 0x08000000)  # Main 4:2:2 10 (format range extensions)
    w.flag(1).flag(0).flag(0).flag(1)  # progressive, not interlaced, packed, frame only
    w.flag(1).flag(1).flag(0).flag(1).flag(0).flag(0).flag(0).flag(0).flag(1)
    w.u(34, 0).flag(0)  # reserved, general_inbld_flag
    w.u(8, 93)
    w.flag(1).flag(1).flag(0).flag(1)  # sub-layer 0: profile and level; sub-layer 1: level
    w.u(12, 0)  # reserved_zero_2bits for sub-layers 2..7
    w.u(2, 0).flag(0).u(5, 4).u(32, 0x08000000).u(48, 0x9D0800000000).u(8, 90)
    w.u(8, 87)


def crafted_hevc_vps(timing: bool) -> bytes:
    w = BitWriter().u(4, 0).flag(1).flag(1).u(6, 0).u(3, 2).flag(0).u(16, 0xFFFF)
    _write_rext_profile_tier_level(w)
    w.flag(1)
    for _ in range(3):
        w.ue(4).ue(2).ue(0)
    w.u(6, 0).ue(1).flag(1)  # two layer sets, layer 0 in the second
    w.flag(timing)
    if timing:
        w.u(32, 1).u(32, 25).flag(0).ue(0)
    w.flag(0)  # vps_extension_flag
    return b"\x40\x01" + escape(w.rbsp())


def crafted_hevc_sps(vui_timing: bool) -> bytes:
    w = BitWriter().u(4, 0).u(3, 2).flag(0)
    _write_rext_profile_tier_level(w)
    w.ue(0).ue(2)  # sps id, 4:2:2
    w.ue(648).ue(368).flag(1).ue(0).ue(3).ue(0).ue(6)  # crop 3 chroma columns, 6 rows
    w.ue(2).ue(2).ue(4)  # 10-bit, 10-bit, 8-bit POC LSBs
    w.flag(0).ue(4).ue(2).ue(0)  # ordering info for the highest sub-layer only
    w.ue(0).ue(2).ue(0).ue(3).ue(1).ue(1)  # block sizes 8..32, transforms 4..32
    w.flag(1).flag(1)  # scaling lists, coded in the SPS
    for size_id in range(4):
        for matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if matrix_id == 0:
                w.flag(1)  # coded explicitly
                if size_id > 1:
                    w.se(8)
                for coefficient in range(min(64, 1 << (4 + 2 * size_id))):
                    w.se(1 if coefficient % 2 else -1)
            else:
                w.flag(0).ue(1)  # copied from the previous matrix
    w.flag(1).flag(1)  # amp, sao
    w.flag(1).u(4, 7).u(4, 7).ue(0).ue(1).flag(0)  # PCM
    w.ue(3)  # three short-term reference picture sets
    w.ue(2).ue(1).ue(0).flag(1).ue(1).flag(1).ue(0).flag(0)  # -1, -3, +1
    w.flag(1).flag(1).ue(0)  # predicted from set 0 with delta -1
    w.flag(1).flag(0).flag(1).flag(0).flag(0).flag(1)  # keep -2, -4 and -1
    w.flag(1).flag(0).ue(1)  # predicted from set 1 with delta +2
    w.flag(1).flag(0).flag(0).flag(0).flag(1).flag(1)  # keep 1, -2 and 2
    w.flag(1).ue(2).u(8, 17).flag(1).u(8, 200).flag(0)  # two long-term pictures
    w.flag(1).flag(1)  # temporal MVP, strong intra smoothing
    w.flag(1)  # vui_parameters_present_flag
    w.flag(1).u(8, 255).u(16, 4).u(16, 3)
    w.flag(0)  # overscan
    w.flag(1).u(3, 5).flag(0).flag(1).u(8, 9).u(8, 16).u(8, 9)
    w.flag(1).ue(1).ue(1)
    w.flag(0).flag(0).flag(0)  # neutral chroma, field_seq, frame_field_info
    w.flag(1).ue(0).ue(0).ue(0).ue(0)  # default display window
    w.flag(vui_timing)
    if vui_timing:
        w.u(32, 1001).u(32, 60000).flag(0).flag(0)
    w.flag(0)  # bitstream_restriction_flag
    w.flag(0)  # sps_extension_present_flag
    return b"\x42\x01" + escape(w.rbsp())


CRAFTED_HVCC_HEADER = bytes.fromhex("0104080000009d08000000005df000fcfefafa00001b")


def write_pq_colour(w: BitWriter) -> None:
    w.flag(1).flag(0).flag(1).u(8, 9).u(8, 16).u(8, 9)  # 10-bit, colour, BT.2020 PQ
    w.flag(1).u(2, 0)  # full range, chroma position


def rest_of_sequence_header(
    w: BitWriter, reduced: bool, colour: Callable[[BitWriter], None] = write_pq_colour
) -> bytes:
    if not reduced:
        w.flag(0)  # frame_id_numbers_present_flag
    w.flag(0).flag(0).flag(0)  # 64x64 superblocks, no filter intra, no intra edge filter
    if not reduced:
        w.flag(0).flag(0).flag(0).flag(0)  # interintra, masked, warped, dual filter
        w.flag(1).flag(0).flag(0)  # order hints, no jnt_comp, no ref_frame_mvs
        w.flag(1).flag(1)  # screen content tools and integer MVs chosen per frame
        w.u(3, 6)  # order_hint_bits_minus_1
    w.flag(0).flag(1).flag(1)  # superres, cdef, restoration
    colour(w)
    w.flag(0).flag(0)  # separate_uv_delta_q, film_grain_params_present
    return w.rbsp()


def full_sequence_header(ticks_per_picture: int | None) -> bytes:
    w = BitWriter().u(3, 0).flag(0).flag(0)
    w.flag(1).u(32, 1001).u(32, 60000)  # timing_info
    w.flag(ticks_per_picture is not None)  # equal_picture_interval
    if ticks_per_picture is not None:
        code = ticks_per_picture  # uvlc of num_ticks_per_picture_minus_1
        w.u(code.bit_length() - 1, 0).u(code.bit_length(), code)
    w.flag(1).u(5, 9).u(32, 1001).u(5, 4).u(5, 4)  # decoder_model_info
    w.flag(1)  # initial_display_delay_present_flag
    w.u(5, 1)  # two operating points
    w.u(12, 0x103).u(5, 9).flag(1)  # level 4.1 (index 9) has a tier bit
    w.flag(1).u(10, 500).u(10, 400).flag(0)  # decoder model for this point
    w.flag(1).u(4, 9)  # initial display delay for this point
    w.u(12, 0x101).u(5, 5).flag(0).flag(0)
    w.u(4, 11).u(4, 10).u(12, 1919).u(11, 1079)
    return rest_of_sequence_header(w, reduced=False)


def asc(*fields: tuple[int, int]) -> bytes:
    w = BitWriter()
    for bits, value in fields:
        w.u(bits, value)
    return w.zero_padded()


GA_PLAIN = (3, 0)  # frameLengthFlag, dependsOnCoreCoder, extensionFlag


def opus_head(channels: int, rate: int, family: int, mapping: bytes = b"") -> bytes:
    return (
        b"OpusHead"
        + bytes([1, channels])
        + (312).to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + b"\x00\x00"
        + bytes([family])
        + mapping
    )
