"""insightface RecordIO: framing, headers, labels, the insightface header record, corruption."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from leap_core.data import DatasetError, RecordIOReader, load_image, read_recordio, write_recordio
from leap_core.data.recordio import (
    MAGIC,
    encode_record,
    pack_payload,
    read_index,
    record_path,
    unpack_payload,
)

MAGIC_BYTES = struct.pack("<I", MAGIC)


def test_encode_whole_record_layout() -> None:
    framed = encode_record(b"abcde")
    assert framed[:4] == MAGIC_BYTES
    assert struct.unpack("<I", framed[4:8])[0] == 5  # continuation flag 0, length 5
    assert framed[8:] == b"abcde\0\0\0"


def test_payload_with_aligned_magic_is_split_and_rejoined(tmp_path: Path) -> None:
    payload = b"head" + MAGIC_BYTES + b"middle!!" + MAGIC_BYTES + b"end"
    framed = encode_record(payload)
    # three parts: flags 1, 2, 3 with lengths 4, 8, 3
    assert struct.unpack("<II", framed[0:8]) == (MAGIC, (1 << 29) | 4)
    assert struct.unpack("<II", framed[12:20]) == (MAGIC, (2 << 29) | 8)
    assert struct.unpack("<II", framed[28:36]) == (MAGIC, (3 << 29) | 3)
    rec = tmp_path / "x.rec"
    rec.write_bytes(framed + encode_record(b"next"))
    (tmp_path / "x.idx").write_text(f"0\t0\n1\t{len(framed)}\n")
    reader = RecordIOReader(rec)
    assert reader.read_payload(0) == payload
    assert reader.read_payload(1) == b"next"
    # an unaligned magic is not a split point
    assert encode_record(b"x" + MAGIC_BYTES)[4:8] == struct.pack("<I", 5)


def test_header_pack_unpack() -> None:
    header, image = unpack_payload(pack_payload(7, b"JPEG", record_id=3))
    assert header == (0, 7.0, 3, 0) and image == b"JPEG"
    header, image = unpack_payload(pack_payload([4.0, 9.0], b"IMG"))
    assert header.flag == 2 and header.label == (4.0, 9.0) and image == b"IMG"
    with pytest.raises(DatasetError, match="shorter than a header"):
        unpack_payload(b"short")
    with pytest.raises(DatasetError, match="announces 3 labels beyond the payload"):
        unpack_payload(struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0" * 4)


def write_fixture(tmp_path: Path, jpeg) -> tuple[Path, list[tuple[int, tuple[int, int, int]]]]:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    labels = [2, 0, 2, 1, 0]
    samples = [(float(lbl), jpeg(c)) for lbl, c in zip(labels, colours, strict=True)]
    samples[3] = ([1.0, 5.0], samples[3][1])  # an image record with a label array
    rec = tmp_path / "train.rec"
    assert write_recordio(rec, samples) == 5
    ordered = sorted(zip(labels, colours, strict=True), key=lambda item: item[0])
    return rec, ordered


def test_insightface_file_round_trip(tmp_path: Path, jpeg) -> None:
    rec, ordered = write_fixture(tmp_path, jpeg)
    keys, offsets = read_index(tmp_path / "train.idx")
    assert keys.tolist() == list(range(9))  # header, 5 images, 3 identity records
    assert offsets[0] == 0 and np.all(np.diff(offsets) > 0)
    reader = RecordIOReader(rec)
    header, _ = reader.read(0)
    assert header.flag == 2 and header.label == (6.0, 9.0)
    assert reader.read(6)[0].label == (1.0, 3.0)  # identity 0: image keys 1..2
    assert reader.read(8)[0].label == (4.0, 6.0)  # identity 2: image keys 4..5
    assert reader.image_keys().tolist() == [1, 2, 3, 4, 5]
    assert reader.labels(np.array([1, 2, 3, 4, 5])).tolist() == [0, 0, 1, 2, 2]
    listing = read_recordio(rec)
    assert [(r.pid, r.camid) for r in listing.train] == [(0, 0), (0, 0), (1, 0), (2, 0), (2, 0)]
    assert listing.train[0].path == record_path(rec.resolve(), 1)
    assert listing.skipped == {"train": {"non_image_record": 4}}
    for record, (_, colour) in zip(listing.train, ordered, strict=True):
        pixel = load_image(record.path).getpixel((4, 8))
        assert max(abs(a - b) for a, b in zip(pixel, colour, strict=True)) < 8


def test_plain_file_without_header(tmp_path: Path, jpeg) -> None:
    rec = tmp_path / "plain.rec"
    write_recordio(rec, [(3.0, jpeg((1, 2, 3))), (1.0, jpeg((4, 5, 6)))], insightface_header=False)
    listing = read_recordio(rec)
    assert [r.pid for r in listing.train] == [3, 1]
    assert listing.skipped == {}


def test_corrupt_record_is_named(tmp_path: Path, jpeg) -> None:
    rec, _ = write_fixture(tmp_path, jpeg)
    _, offsets = read_index(tmp_path / "train.idx")
    data = bytearray(rec.read_bytes())
    data[offsets[3] : offsets[3] + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    expected = rf"train\.rec: corrupt record 3 at offset {offsets[3]}: bad magic 0x00000000"
    with pytest.raises(DatasetError, match=expected):
        read_recordio(rec)
    with pytest.raises(DatasetError, match=expected):
        RecordIOReader(rec).read(3)


def test_truncated_file_and_bad_index(tmp_path: Path, jpeg) -> None:
    rec, _ = write_fixture(tmp_path, jpeg)
    _, offsets = read_index(tmp_path / "train.idx")
    rec.write_bytes(rec.read_bytes()[: offsets[5] + 12])
    with pytest.raises(DatasetError, match=r"corrupt record 5 at offset .*past the end"):
        RecordIOReader(rec).read(5)
    with pytest.raises(DatasetError, match="corrupt record 5"):
        read_recordio(rec)
    (tmp_path / "train.idx").write_text("0\t0\n1\tnot-a-number\n")
    with pytest.raises(DatasetError, match=r"train\.idx line 2: expected 'key<TAB>offset'"):
        read_recordio(rec)
    with pytest.raises(DatasetError, match="no record with key 42"):
        write_recordio(tmp_path / "ok.rec", [(0.0, b"x")])
        RecordIOReader(tmp_path / "ok.rec").read(42)


def test_bad_label_is_named(tmp_path: Path) -> None:
    rec = tmp_path / "neg.rec"
    write_recordio(rec, [(-1.0, b"x"), (0.5, b"y")], insightface_header=False)
    with pytest.raises(DatasetError, match=r"record 0 has label -1\.0, expected a non-negative"):
        read_recordio(rec)


def test_undecodable_image_is_named(tmp_path: Path) -> None:
    rec = tmp_path / "bad.rec"
    write_recordio(rec, [(0.0, b"not a jpeg")])
    record = read_recordio(rec).train[0]
    with pytest.raises(DatasetError, match=r"bad\.rec#1: cannot decode image"):
        load_image(record.path)


def test_index_tolerates_trailing_blank_lines_only(tmp_path: Path) -> None:
    idx = tmp_path / "a.idx"
    idx.write_text("0\t0\n1\t36\n\n\n")
    keys, offsets = read_index(idx)
    assert keys.tolist() == [0, 1] and offsets.tolist() == [0, 36]
    idx.write_text("0\t0\n\n1\t36\n")
    with pytest.raises(DatasetError, match=r"a\.idx line 2: expected 'key<TAB>offset', got ''"):
        read_index(idx)
    idx.write_text("0\t0\t7\n1\t36\n")
    with pytest.raises(DatasetError, match=r"a\.idx line 1: expected"):
        read_index(idx)
    idx.write_text("")
    assert read_index(idx)[0].size == 0


def test_listing_catches_a_record_cut_short(tmp_path: Path, jpeg) -> None:
    rec, _ = write_fixture(tmp_path, jpeg)
    _, offsets = read_index(tmp_path / "train.idx")
    rec.write_bytes(rec.read_bytes()[: offsets[5] + 40])  # header intact, image cut
    with pytest.raises(DatasetError, match=r"corrupt record 5 at offset \d+: length \d+ runs past"):
        read_recordio(rec)
