"""insightface RecordIO (``train.rec`` + ``train.idx``) read and written without MXNet.

MS1M, Glint360K and WebFace are distributed in this format; MXNet is a heavy, unmaintained
dependency, so the few bytes of format it needs are implemented here:

- ``.idx``: text lines ``key\\toffset`` giving the byte offset of each record in ``.rec``;
- ``.rec``: each record (or record part) is uint32 magic ``0xced7230a``, uint32 ``lrecord``
  (low 29 bits length, top 3 bits continuation flag: 0 whole, 1 first, 2 middle, 3 last part),
  the bytes, zero padding to 4 bytes. A writer splits a payload wherever the magic number
  appears at an aligned position; the reader joins the parts with the magic in between;
- payload: ``IRHeader`` ``<IfQQ`` (flag, label, id, id2), then ``flag`` float32 labels when
  flag > 0, then the JPEG bytes. insightface stores in record 0 (flag > 0) the range of image
  records ``[1, label[0])``; an image's class is ``label`` (flag 0) or ``label[0]``.

Listing uses numpy on the index text and on a memory map of the ``.rec`` file, so a million
records are listed in well under two seconds.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from leap_core.data.records import DatasetError, Record, SplitListing, gc_paused

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")
"""IRHeader: flag (uint32), label (float32), id (uint64), id2 (uint64); 24 bytes."""
_LENGTH_MASK = (1 << 29) - 1
SCHEME = "recordio:"
"""Record paths look like ``recordio:/data/train.rec#123`` (file, then record key)."""


class IRHeader(NamedTuple):
    """The header of a record payload; ``label`` is a tuple when ``flag`` > 0."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def index_path_for(rec_path: str | os.PathLike[str]) -> Path:
    """The ``.idx`` file that goes with a ``.rec`` file."""
    return Path(rec_path).with_suffix(".idx")


def record_path(rec_path: str | os.PathLike[str], key: int) -> str:
    """The record path naming image ``key`` of ``rec_path`` (see ``SCHEME``)."""
    return f"{SCHEME}{rec_path}#{key}"


def parse_record_path(path: str) -> tuple[str, int]:
    """Split ``recordio:/x/train.rec#12`` into ``("/x/train.rec", 12)``."""
    body, _, key = path[len(SCHEME) :].rpartition("#")
    if not path.startswith(SCHEME) or not body or not key.isdigit():
        raise DatasetError(f"path: not a RecordIO record path, got {path!r}")
    return body, int(key)


def _parse_integers(data: bytes) -> np.ndarray | None:
    """All whitespace-separated integers of ``data`` in one numpy call; ``None`` if any is not.

    ``np.fromstring`` in text mode is the fastest parser numpy has (a million index lines in
    about 0.05 s); on malformed text it warns or raises depending on the numpy version.
    """
    if not data.strip():
        return np.empty(0, dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            return np.fromstring(data, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None


def read_index(idx_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``key\\toffset`` lines into two int64 arrays (keys, offsets), file order."""
    source = Path(idx_path)
    if not source.is_file():
        raise DatasetError(f"{source}: RecordIO index file not found")
    data = source.read_bytes().rstrip()  # trailing newlines and blank lines are harmless
    lines = data.count(b"\n") + 1 if data else 0
    values = _parse_integers(data)
    if values is None or values.size != 2 * lines:
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            fields = line.split()
            if len(fields) != 2 or not all(f.isdigit() for f in fields):
                raise DatasetError(
                    f"{source} line {number}: expected 'key<TAB>offset', got {line!r}"
                )
        raise DatasetError(f"{source}: could not parse the index")
    pairs = values.reshape(-1, 2).astype(np.int64)
    if (pairs < 0).any():
        raise DatasetError(f"{source}: negative key or offset")
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def pack_payload(label: float | Sequence[float], image: bytes, record_id: int = 0) -> bytes:
    """Build a record payload: IRHeader, extra labels when ``label`` is a sequence, image."""
    if isinstance(label, int | float):
        return HEADER.pack(0, float(label), record_id, 0) + image
    values = [float(v) for v in label]
    extra = struct.pack(f"<{len(values)}f", *values)
    return HEADER.pack(len(values), 0.0, record_id, 0) + extra + image


def unpack_payload(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a payload into its header and image bytes."""
    if len(payload) < HEADER.size:
        raise DatasetError(f"{where}: payload of {len(payload)} bytes is shorter than a header")
    flag, label, rid, rid2 = HEADER.unpack_from(payload)
    start = HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(payload):
            raise DatasetError(f"{where}: header announces {flag} labels beyond the payload")
        values = struct.unpack_from(f"<{flag}f", payload, start)
        return IRHeader(flag, values, rid, rid2), payload[end:]
    return IRHeader(flag, label, rid, rid2), payload[start:]


def encode_record(payload: bytes) -> bytes:
    """Frame a payload as dmlc RecordIO does, splitting at aligned occurrences of the magic."""
    parts: list[bytes] = []
    start = 0
    position = 0
    cuts: list[int] = []
    while True:
        position = payload.find(_MAGIC_BYTES, position)
        if position < 0 or position + 4 > (len(payload) // 4) * 4:
            break
        if position % 4 == 0:
            cuts.append(position)
            position += 4
        else:
            position += 1
    for number, cut in enumerate(cuts):
        flag = 1 if number == 0 else 2
        parts.append(_MAGIC_BYTES + struct.pack("<I", (flag << 29) | (cut - start)))
        parts.append(payload[start:cut])
        start = cut + 4
    last_flag = 3 if cuts else 0
    tail = payload[start:]
    parts.append(_MAGIC_BYTES + struct.pack("<I", (last_flag << 29) | len(tail)))
    parts.append(tail + b"\0" * (-len(tail) % 4))
    return b"".join(parts)


def write_recordio(
    rec_path: str | os.PathLike[str],
    samples: Iterable[tuple[float | Sequence[float], bytes]],
    *,
    idx_path: str | os.PathLike[str] | None = None,
    insightface_header: bool = True,
) -> int:
    """Write ``(label, jpeg_bytes)`` samples as ``.rec`` + ``.idx``; return the image count.

    With ``insightface_header`` the file looks like insightface's: samples are grouped by class
    (stable), record 0 holds ``(first_identity_key, end_key)``, images are keys ``1..N`` and
    one record per identity ``N+1..N+C`` holds that identity's image key range. Used by the
    tests and the benchmark to build fixtures; not tuned for speed.
    """
    items = list(samples)
    index_file = Path(idx_path) if idx_path is not None else index_path_for(rec_path)
    records: list[tuple[int, bytes]] = []
    if insightface_header:
        items.sort(key=lambda item: _class_of(item[0]))
        ranges: list[tuple[int, int]] = []
        for key, (label, _) in enumerate(items, start=1):
            if ranges and _class_of(items[key - 2][0]) == _class_of(label):
                ranges[-1] = (ranges[-1][0], key + 1)
            else:
                ranges.append((key, key + 1))
        first_identity = len(items) + 1
        header = pack_payload((first_identity, first_identity + len(ranges)), b"")
        records.append((0, header))
        records += [(k, pack_payload(lbl, img)) for k, (lbl, img) in enumerate(items, start=1)]
        records += [(first_identity + i, pack_payload(span, b"")) for i, span in enumerate(ranges)]
    else:
        records = [(k, pack_payload(lbl, img)) for k, (lbl, img) in enumerate(items)]
    offset = 0
    with open(rec_path, "wb") as rec, open(index_file, "w", encoding="ascii") as idx:
        for key, payload in records:
            framed = encode_record(payload)
            rec.write(framed)
            idx.write(f"{key}\t{offset}\n")
            offset += len(framed)
    return len(items)


def _class_of(label: float | Sequence[float]) -> float:
    return float(label) if isinstance(label, int | float) else float(label[0])


class RecordIOReader:
    """Random access to the records of one ``.rec`` file through its ``.idx`` index."""

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise DatasetError(f"{self.rec_path}: RecordIO file not found")
        self.idx_path = Path(idx_path) if idx_path is not None else index_path_for(rec_path)
        self.keys, self.offsets = read_index(self.idx_path)
        self._offset_of: dict[int, int] | None = None
        self._order: np.ndarray | None = None
        self._handle: BinaryIO | None = None
        self.size = self.rec_path.stat().st_size

    def offset(self, key: int) -> int:
        """Byte offset of record ``key``; ``DatasetError`` when the index lacks it."""
        if self._offset_of is None:
            self._offset_of = dict(zip(self.keys.tolist(), self.offsets.tolist(), strict=True))
        try:
            return self._offset_of[key]
        except KeyError:
            raise DatasetError(f"{self.idx_path}: no record with key {key}") from None

    def read_payload(self, key: int) -> bytes:
        """The payload of record ``key``, its parts joined; corrupt framing raises."""
        if self._handle is None:
            self._handle = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for reuse
        handle = self._handle
        position = self.offset(key)
        where = f"{self.rec_path}: corrupt record {key} at offset {position}"
        chunks: list[bytes] = []
        while True:
            handle.seek(position)
            head = handle.read(8)
            if len(head) < 8:
                raise DatasetError(f"{where}: file ends inside the record header")
            magic, lrecord = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DatasetError(f"{where}: bad magic 0x{magic:08x}")
            length, cflag = lrecord & _LENGTH_MASK, lrecord >> 29
            body = handle.read(length)
            if len(body) < length:
                raise DatasetError(f"{where}: length {length} runs past the end of the file")
            expected = (0, 1) if not chunks else (2, 3)
            if cflag not in expected:
                raise DatasetError(f"{where}: unexpected continuation flag {cflag}")
            chunks.append(body)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(chunks)
            position += 8 + length + (-length % 4)

    def read(self, key: int) -> tuple[IRHeader, bytes]:
        """Header and image bytes of record ``key``."""
        return unpack_payload(self.read_payload(key), f"{self.rec_path} record {key}")

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """Positions in the index of ``keys``; ``DatasetError`` naming the first one missing."""
        if self._order is None:
            self._order = np.argsort(self.keys, kind="stable")
        order = self._order
        if order.size == 0:
            slots = np.zeros(keys.shape, dtype=np.int64)
            found = np.zeros(keys.shape, dtype=bool)
        else:
            at = np.minimum(np.searchsorted(self.keys, keys, sorter=order), order.size - 1)
            slots = order[at]
            found = self.keys[slots] == keys
        if not found.all():
            raise DatasetError(f"{self.idx_path}: no record with key {int(keys[~found][0])}")
        return slots

    def image_keys(self) -> np.ndarray:
        """Keys of image records: ``1..label[0]-1`` with an insightface header, else all keys."""
        if self.keys.size == 0:
            return self.keys
        first = int(self.keys.min())
        header, _ = self.read(first)
        if first == 0 and header.flag > 0:
            end = int(header.label[0])  # type: ignore[index]
            keys = np.arange(1, end, dtype=np.int64)
            self._slots(keys)  # every announced image must be indexed
            return keys
        return np.sort(self.keys)

    def labels(self, keys: np.ndarray) -> np.ndarray:
        """Class labels (int64) of records ``keys``, read through a memory map in one pass."""
        if keys.size == 0:
            return np.empty(0, dtype=np.int64)
        offsets = self.offsets[self._slots(keys)]
        bad = np.flatnonzero((offsets % 4 != 0) | (offsets + 8 + HEADER.size > self.size))
        if bad.size:
            raise DatasetError(
                f"{self.rec_path}: corrupt record {int(keys[bad[0]])} at offset "
                f"{int(offsets[bad[0]])}: offset misaligned or past the end of the file"
            )
        words = np.memmap(self.rec_path, dtype="<u4", mode="r", shape=(self.size // 4,))
        at = offsets // 4
        magic = np.asarray(words[at])
        lrecord = np.asarray(words[at + 1])
        flag = np.asarray(words[at + 2])
        length = lrecord & _LENGTH_MASK
        label = np.asarray(words[at + 3]).view("<f4").astype(np.float64)
        corrupt = np.flatnonzero(magic != MAGIC)
        if corrupt.size:
            i = corrupt[0]
            raise DatasetError(
                f"{self.rec_path}: corrupt record {int(keys[i])} at offset {int(offsets[i])}: "
                f"bad magic 0x{int(magic[i]):08x}"
            )
        overrun = np.flatnonzero(offsets + 8 + length.astype(np.int64) > self.size)
        if overrun.size:
            i = overrun[0]
            raise DatasetError(
                f"{self.rec_path}: corrupt record {int(keys[i])} at offset {int(offsets[i])}: "
                f"length {int(length[i])} runs past the end of the file"
            )
        slow = (length < HEADER.size) | ((flag > 0) & (length < HEADER.size + 4))
        multi = (flag > 0) & ~slow
        if multi.any():
            ends = at[multi] + 8
            inside = ends < words.shape[0]
            if not inside.all():
                i = np.flatnonzero(multi)[~inside][0]
                raise DatasetError(f"{self.rec_path}: corrupt record {int(keys[i])}: truncated")
            label[multi] = np.asarray(words[ends]).view("<f4")
        for i in np.flatnonzero(slow):
            header, _ = self.read(int(keys[i]))
            label[i] = header.label[0] if header.flag > 0 else header.label  # type: ignore[index]
        bad_label = ~np.isfinite(label) | (label < 0) | (label != np.floor(label))
        if bad_label.any():
            i = np.flatnonzero(bad_label)[0]
            raise DatasetError(
                f"{self.rec_path}: record {int(keys[i])} has label {float(label[i])!r}, "
                "expected a non-negative integer class"
            )
        del words
        return label.astype(np.int64)

    def close(self) -> None:
        """Close the open file handle, if any."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self) -> dict[str, object]:
        """Drop the file handle when pickled to DataLoader workers; each reopens its own."""
        state = self.__dict__.copy()
        state["_handle"] = None
        return state


def read_recordio(
    rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
) -> SplitListing:
    """List the image records of a RecordIO file as the training split (camera 0).

    Query and gallery stay empty: face sets in this format are evaluated on separate
    verification benchmarks (LFW and others).
    """
    reader = RecordIOReader(rec_path, idx_path)
    keys = reader.image_keys()
    labels = reader.labels(keys)
    listing = SplitListing(name="recordio")
    prefix = f"{SCHEME}{Path(rec_path).resolve()}#"
    with gc_paused():
        paths = map(prefix.__add__, map(str, keys.tolist()))
        listing.train = list(map(Record._make, zip(paths, labels.tolist(), repeat(0))))
    skipped = int(reader.keys.size - keys.size)
    listing.count_skipped("train", "non_image_record", skipped)
    return listing
