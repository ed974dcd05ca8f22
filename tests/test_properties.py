"""Property-based tests (hypothesis) of what hostile uploads reach first: the image decoder, the
enroll manifest parser and import archives, and the video prober's limits.

The properties are those the fuzz targets in ``fuzz/`` check (their ``check`` functions are
reused here, so both always test the same thing): for any input, a result within the limits or
a :class:`facetrace.errors.FacetraceError`, never another exception; no image path outside a
manifest's folder; no header-declared size beyond the limits accepted or decoded.

Reproducibility: every test runs with ``derandomize=True`` and ``database=None``. Hypothesis then
draws the same examples on every run and machine (derived from the test's source), and writes no
``.hypothesis`` example database into the work tree: a CI failure replays locally, exactly. The
cost, never exploring new examples from run to run, is what the atheris fuzzers (``fuzz/``,
``tests/test_fuzz_bounded.py``) are for. ``FACETRACE_PROPERTY_EXAMPLES=10`` multiplies the number
of examples (still derandomised) for a longer local run.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import ImageFile

from facetrace.errors import ImageError, ImageTooLargeError, ManifestError
from facetrace.gallery.sources import REQUIRED_COLUMNS, read_manifest
from facetrace.vision.decode import decode_image
from facetrace.vision.video import SNIFF_BYTES, sniff_video_format

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "fuzz" / "corpus"
SCALE = max(1, int(os.environ.get("FACETRACE_PROPERTY_EXAMPLES", "1")))
# Pillow and zipfile warn about every odd tag or name in hostile files: expected here, and noise.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def examples(n: int) -> settings:
    """Bounded, reproducible settings: ``n`` examples (times FACETRACE_PROPERTY_EXAMPLES)."""
    return settings(
        max_examples=n * SCALE,
        deadline=None,  # shared CI cores: a slow example is not a failure
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fuzz_target(name: str) -> ModuleType:
    """Import ``fuzz/fuzz_NAME.py`` (not a package: its scripts run as ``python fuzz/...``)."""
    spec = importlib.util.spec_from_file_location(f"facetrace_fuzz_{name}", REPO_ROOT / "fuzz" / f"fuzz_{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load()
    return module


FUZZ_DECODE = fuzz_target("decode")
FUZZ_MANIFEST = fuzz_target("manifest")
FUZZ_VIDEO = fuzz_target("video")


def seeds(target: str) -> dict[str, bytes]:
    """Return the committed seed corpus of a fuzz target, name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted((CORPUS / target).iterdir()) if p.is_file()}


IMAGE_SEEDS = seeds("decode")
VIDEO_SEEDS = seeds("video")


@st.composite
def mutated(draw: st.DrawFn, corpus: dict[str, bytes], max_edits: int = 8) -> bytes:
    """A committed seed with a few byte-level edits: overwrites, inserts, deletions, a truncation."""
    data = bytearray(draw(st.sampled_from(sorted(corpus.values()))))
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate", "int32"]))
        if op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        else:  # a length, offset or size field set to an extreme
            value = draw(st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


# ---------------------------------------------------------------------------------------------
# Image decoder

IMAGE_MAGIC = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"GIF89a",
]


@examples(150)
@given(
    st.one_of(st.binary(max_size=512), st.tuples(st.sampled_from(IMAGE_MAGIC), st.binary(max_size=512)).map(b"".join))
)
def test_decode_any_bytes_gives_rgb_within_limits_or_an_image_error(data: bytes) -> None:
    FUZZ_DECODE.check(data)


@examples(150)
@given(mutated(IMAGE_SEEDS))
def test_decode_mutated_images_gives_rgb_within_limits_or_an_image_error(data: bytes) -> None:
    FUZZ_DECODE.check(data)


def _png(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(">II", out, 16, w, h)
    struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))  # Pillow checks the IHDR CRC
    return bytes(out)


def _jpeg(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, sof + 5, h, w)
    return bytes(out)


def _gif(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<HH", out, 6, w, h)  # the logical screen
    return bytes(out)


def _bmp(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<ii", out, 18, w, h)
    return bytes(out)


def _tiff(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    order = "<" if out[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", out, 4)[0]
    for i in range(struct.unpack_from(order + "H", out, ifd)[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from(order + "HH", out, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = w if tag == 256 else h
            if kind == 3:  # SHORT
                struct.pack_into(order + "HH", out, entry + 8, min(value, 0xFFFF), 0)
            else:
                struct.pack_into(order + "I", out, entry + 8, value)
    return bytes(out)


def _webp_lossy(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<HH", out, 26, min(w, 0x3FFF), min(h, 0x3FFF))
    return bytes(out)


def _webp_lossless(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    bits = struct.unpack_from("<I", out, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", out, 21, bits | (min(w, 0x4000) - 1) | ((min(h, 0x4000) - 1) << 14))
    return bytes(out)


# seed, patcher, largest side the field holds
DIMENSION_FIELDS: dict[str, tuple[str, Callable[[bytes, int, int], bytes], int]] = {
    "png": ("seed-rgb.png", _png, 0x7FFFFFFF),
    "jpeg": ("seed-rgb.jpg", _jpeg, 0xFFFF),
    "gif": ("seed-one-frame.gif", _gif, 0xFFFF),
    "bmp": ("seed-rgb.bmp", _bmp, 0x7FFFFFFF),
    "tiff": ("seed-raw.tif", _tiff, 0xFFFFFFFF),
    "tiff-lzw": ("seed-lzw.tif", _tiff, 0xFFFFFFFF),
    "webp-lossy": ("seed-lossy.webp", _webp_lossy, 0x3FFF),
    "webp-lossless": ("seed-lossless-alpha.webp", _webp_lossless, 0x4000),
}
SMALL_LIMIT = 100 * 100


@contextlib.contextmanager
def pixel_loads() -> Iterator[list[tuple[int, int]]]:
    """Record the size of every image whose pixels Pillow loads (decodes) in the block."""
    loaded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        loaded.append(self.size)
        return real_load(self)

    with mock.patch.object(ImageFile.ImageFile, "load", spy):
        yield loaded


@examples(120)
@given(st.sampled_from(sorted(DIMENSION_FIELDS)), st.data())
def test_huge_header_dimensions_are_refused_before_decoding(fmt: str, data: st.DataObject) -> None:
    seed, patch, largest = DIMENSION_FIELDS[fmt]
    width = data.draw(st.integers(1, largest), label="width")
    height = data.draw(st.integers(1, largest), label="height")
    assume(width * height > SMALL_LIMIT)
    hostile = patch(IMAGE_SEEDS[seed], width, height)
    with pixel_loads() as loaded, pytest.raises(ImageTooLargeError):
        decode_image(hostile, max_pixels=SMALL_LIMIT)
    # Refused from the header: no image over the limit had its pixels decoded.
    assert all(w * h <= SMALL_LIMIT for w, h in loaded), loaded


def test_huge_header_dimensions_allocate_nothing(tmp_path: Path, run_python: Callable[[str], str]) -> None:
    """The largest size each format's header can declare, at the default limit, in a fresh
    process: its peak memory must stay far below what one decoded frame would need."""
    cases = {}
    for name, (seed, patch, largest) in DIMENSION_FIELDS.items():
        cases[f"{name}-largest"] = patch(IMAGE_SEEDS[seed], largest, largest)
        # Over our limit (50 Mpx) but under Pillow's own bomb check (179 Mpx): only ours stops it.
        cases[f"{name}-64mpx"] = patch(IMAGE_SEEDS[seed], 8000, 8000)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    script = f"""
import resource, sys
from pathlib import Path
from facetrace.errors import ImageError
from facetrace.vision.decode import decode_image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sorted(Path({str(tmp_path)!r}).iterdir()):
    try:
        decode_image(path.read_bytes())
        print(path.name, "DECODED")
    except ImageError as exc:
        print(path.name, type(exc).__name__)
print("growth_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    out = run_python(script)
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert set(lines) == set(cases) | {"growth_mb"}
    assert set(lines.values()) - {lines["growth_mb"]} == {"ImageTooLargeError"}, out
    # A 50-megapixel RGB frame alone is 150 MB; a refusal from the header costs a few MB.
    assert float(lines["growth_mb"]) < 64, out  # measured: about 2 MB


@pytest.fixture()
def run_python() -> Callable[[str], str]:
    """Return ``run(source)``: runs Python source in a fresh interpreter, returns its stdout."""
    import subprocess
    import sys

    def run(source: str) -> str:
        done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    return run


@pytest.mark.parametrize("name", [n for n in IMAGE_SEEDS if n.startswith("seed-") and "bomb" not in n])
def test_valid_seed_images_still_decode(name: str) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(IMAGE_SEEDS[name])) as img:
        width, height = img.size
    image = decode_image(IMAGE_SEEDS[name])
    assert image.dtype.name == "uint8" and image.shape[2] == 3
    assert sorted(image.shape[:2]) == sorted((height, width))  # EXIF may turn it a quarter


def test_corrupt_tiff_strip_offsets_are_an_image_error() -> None:
    # Found by fuzz/fuzz_decode.py: a StripOffsets tag of RATIONAL type made Pillow raise TypeError.
    data = bytes.fromhex(
        "4d4d002a000000080009010000040000000100000004010100040000000100000003010200110004000000010000"
        "0111000b00000001a50e0000c40e00000003cfc365a900bf"
    )
    with pytest.raises(ImageError, match="cannot decode image"):
        decode_image(data)


# ---------------------------------------------------------------------------------------------
# Manifest parser and import archives


@contextlib.contextmanager
def manifest_folder() -> Iterator[Path]:
    """A manifest's folder ``top/sub`` with an image inside, one beside it (``top/outside.jpg``),
    a link out of it (``sub/up`` -> ``top``) and a link loop (``sub/loop``)."""
    with tempfile.TemporaryDirectory(prefix="facetrace-prop-") as tmp:
        top = Path(tmp)
        sub = top / "sub"
        (sub / "a").mkdir(parents=True)
        for path in (top / "outside.jpg", sub / "a.jpg", sub / "a" / "b.jpg"):
            path.write_bytes(b"")
        (sub / "up").symlink_to(top)
        (sub / "loop").symlink_to(sub / "loop")
        yield sub


def _assert_contained(items: list[Any], folder: Path) -> None:
    for item in items:
        for image in item.images:
            assert image.resolve().is_relative_to(folder.resolve()), image


@examples(150)
@given(st.one_of(st.binary(max_size=600), st.text(max_size=600).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_manifest_any_bytes_gives_rows_inside_the_folder_or_a_manifest_error(data: bytes) -> None:
    with manifest_folder() as folder:
        path = folder / "manifest.csv"
        for text in (data, b"\xef\xbb\xbf" + ",".join(REQUIRED_COLUMNS).encode() + b"\n" + data):
            path.write_bytes(text)
            try:
                items, problems = read_manifest(path)
            except ManifestError as exc:
                assert exc.message and "\n" not in exc.message
                continue
            _assert_contained(items, folder)
            assert all(p.message and "\n" not in p.message for p in problems)


HOSTILE_PATHS = [
    "a.jpg",
    "./a.jpg",
    "a/b.jpg",
    "a/../a.jpg",
    "../outside.jpg",
    "a/../../outside.jpg",
    "/etc/passwd",
    "~/outside.jpg",
    "\\\\server\\share\\x.jpg",
    "..\\outside.jpg",
    "up/outside.jpg",
    "up/sub/a.jpg",
    "loop/x.jpg",
    "C:\\x.jpg",
    "a.jpg;../outside.jpg",
    "",
]
OUTSIDE = {"../outside.jpg", "a/../../outside.jpg", "/etc/passwd", "~/outside.jpg", "up/outside.jpg", "loop/x.jpg"}
OUTSIDE |= {"\\\\server\\share\\x.jpg"}
# Any text but NUL (a manifest holding NUL is refused as a whole: tested apart).
text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
cell = st.one_of(text, st.sampled_from(["", " ", '"', "\n", "a,b", "\ufeff", "é"]))
image_cell = st.lists(st.one_of(st.sampled_from(HOSTILE_PATHS), text), min_size=1, max_size=3).map(";".join)


@st.composite
def manifests(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A CSV header (required columns shuffled, maybe one missing or doubled, extra columns, stray
    spaces) and rows of hostile values."""
    columns = list(draw(st.permutations(REQUIRED_COLUMNS)))
    if draw(st.booleans()):
        columns.remove(draw(st.sampled_from(REQUIRED_COLUMNS)))
    columns += draw(
        st.lists(st.sampled_from(["collected_at", "contact_name", "notes", "image", "name", ""]), max_size=3)
    )
    header = [draw(st.sampled_from(["", " "])) + c + draw(st.sampled_from(["", " "])) for c in columns]
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        row = [draw(image_cell) if c == "image" else draw(cell) for c in columns]
        if draw(st.booleans()):
            row = row[: draw(st.integers(0, len(row)))] or row  # ragged rows
        rows.append(row)
    return header, rows


@examples(200)
@given(manifests(), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_manifest_columns_and_paths(manifest: tuple[list[str], list[list[str]]], newline: str, bom: bool) -> None:
    header, rows = manifest
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    names = [c.strip() for c in header]
    with manifest_folder() as folder:
        path = folder / "manifest.csv"
        path.write_text(("\ufeff" if bom else "") + out.getvalue(), encoding="utf-8")
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        doubled = {c for c in names if c and names.count(c) > 1}
        if missing or doubled:
            with pytest.raises(ManifestError, match="missing column" if missing else "more than once"):
                read_manifest(path)
            return
        items, problems = read_manifest(path)
        _assert_contained(items, folder)
        refused = [p for p in problems if "refused" in p.message]
        expected = 0  # rows that name a known outside path: each must be refused, not enrolled
        for row in rows:
            values = dict(zip(names, row, strict=False))
            parts = [p.strip() for p in values.get("image", "").split(";") if p.strip()]
            complete = all(values.get(c, "").strip() for c in REQUIRED_COLUMNS)
            expected += complete and any(p in OUTSIDE for p in parts)
        assert len(refused) >= expected, problems


def test_manifest_huge_field_nul_and_link_loop(tmp_path: Path) -> None:
    header = ",".join(REQUIRED_COLUMNS)
    path = tmp_path / "m.csv"
    path.write_text(f"{header}\nr1,{'x' * 200_000},a.jpg,s,c\n")
    with pytest.raises(ManifestError, match="not valid CSV"):
        read_manifest(path)
    path.write_text(f"{header}\nr1,A\x00,a.jpg,s,c\n")
    with pytest.raises(ManifestError, match="not text"):
        read_manifest(path)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    path.write_text(f"{header}\nr1,A,loop/a.jpg,s,c\nr2,B,b.jpg,s,c\n")
    items, problems = read_manifest(path)  # a link loop was a RuntimeError out of Path.resolve()
    assert [i.external_id for i in items] == ["r2"]
    assert len(problems) == 1 and "link loop" in problems[0].message


def test_manifest_duplicate_columns_are_refused_but_unnamed_ones_are_ignored(tmp_path: Path) -> None:
    header = ",".join(REQUIRED_COLUMNS)
    path = tmp_path / "m.csv"
    path.write_text(f"{header},notes, notes \nr1,A,a.jpg,s,c,first,second\n")
    with pytest.raises(ManifestError, match="'notes' appear more than once"):
        read_manifest(path)
    path.write_text(f"{header},,\nr1,A,a.jpg,s,c,,\n")  # spreadsheets add empty columns at the end
    items, problems = read_manifest(path)
    assert [i.external_id for i in items] == ["r1"] and not problems


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return out.getvalue()


def _stored_zip_with_an_empty_name(content: bytes) -> bytes:
    """A zip archive of one stored member whose name is empty, written field by field."""
    crc = zlib.crc32(content)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(content), len(content), 0, 0)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, len(content), len(content), 0, 0, 0, 0, 0, 0, 0
    )
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(content), 0)
    return local + content + central + end


MANIFEST_CSV = (",".join(REQUIRED_COLUMNS) + "\nr1,Ana,photos/a.png,src,consent\n").encode()
ARCHIVE_NAMES = [
    "manifest.csv",
    "photos/a.png",
    "photos",
    "../evil.csv",
    "/abs.csv",
    "a\\..\\..\\b",
    "C:x",
    "x" * 300,
]  # an empty name, which zipfile cannot write: fuzz/corpus/manifest/regress-zip-empty-member-name.zip


@examples(80)
@given(
    st.lists(st.tuples(st.sampled_from(ARCHIVE_NAMES), st.sampled_from([MANIFEST_CSV, b"", b"\x89PNG"])), max_size=4),
    st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]),
    st.data(),
)
def test_import_archives_unpack_inside_their_folder_or_give_a_manifest_error(
    members: list[tuple[str, bytes]], method: int, data: st.DataObject
) -> None:
    archive = _zip(members, method)
    if data.draw(st.booleans(), label="damage"):
        archive = data.draw(mutated({"a": archive}, max_edits=3), label="damaged")
    FUZZ_MANIFEST.check(archive)  # asserts: no file outside, items inside, only FacetraceError


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad-crc", "cannot be read"),
        ("bad-deflate", "cannot be read"),
        ("unsupported-method", "cannot be read"),
        ("encrypted", "cannot be read"),
        ("empty-name", "leaves the archive's folder"),
        ("file-and-folder", "cannot be unpacked"),
        ("name-too-long", "cannot be unpacked"),
    ],
)
def test_damaged_archives_are_a_manifest_error(tmp_path: Path, case: str, message: str) -> None:
    """Each case made zipfile raise something other than BadZipFile (found by fuzz/fuzz_manifest.py):
    the import API answered 500 instead of 422."""
    from facetrace.usecases.jobs import extract_archive

    members = [("manifest.csv", MANIFEST_CSV)]
    if case == "file-and-folder":
        members += [("photos", b"x"), ("photos/a.png", b"x")]
    elif case == "name-too-long":
        members += [("p" * 300 + ".png", b"x")]
    data = bytearray(_zip(members, zipfile.ZIP_STORED if case == "bad-crc" else zipfile.ZIP_DEFLATED))
    if case == "empty-name":  # zipfile cannot write one (fuzz/corpus/manifest/regress-zip-empty-member-name.zip)
        data = bytearray(_stored_zip_with_an_empty_name(b"x"))
    local = data.find(b"PK\x03\x04")
    if case == "bad-crc":
        data[local + 30 + len("manifest.csv")] ^= 0xFF  # the first byte of the stored data
    elif case == "bad-deflate":
        data[local + 30 + len("manifest.csv") : local + 34 + len("manifest.csv")] = b"\xff\xff\xff\xff"
    elif case in ("unsupported-method", "encrypted"):
        central = data.find(b"PK\x01\x02")
        if case == "unsupported-method":
            struct.pack_into("<H", data, local + 8, 99)  # compression method (AES in WinZip)
            struct.pack_into("<H", data, central + 10, 99)
        else:
            struct.pack_into("<H", data, local + 6, 1)  # general purpose flags: encrypted
            struct.pack_into("<H", data, central + 8, 1)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(ManifestError, match=message) as refused:
        extract_archive(io.BytesIO(bytes(data)), dest, max_bytes=1 << 20)
    assert "\n" not in refused.value.message
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in tmp_path.rglob("*")), list(tmp_path.rglob("*"))


# ---------------------------------------------------------------------------------------------
# Video sniffing and limits

VIDEO_MAGIC = [
    b"\x00\x00\x00\x18ftypisom",
    b"\x00\x00\x00\x14ftypqt  ",
    b"\x00\x00\x00\x08moov",
    b"\x1a\x45\xdf\xa3",
    b"RIFF\x00\x00\x00\x00AVI ",
]


@examples(300)
@given(st.one_of(st.binary(max_size=80), st.tuples(st.sampled_from(VIDEO_MAGIC), st.binary(max_size=64)).map(b"".join)))
def test_sniff_video_never_raises(data: bytes) -> None:
    kind = sniff_video_format(data[:SNIFF_BYTES])
    assert kind is None or kind in {"mp4", "mov", "webm", "mkv", "avi"}


@examples(25)
@given(st.tuples(st.sampled_from(VIDEO_MAGIC), st.binary(max_size=400)).map(b"".join))
def test_probe_random_video_headers_gives_a_facetrace_error(data: bytes) -> None:
    FUZZ_VIDEO.check(data)


@examples(40)
@given(mutated(VIDEO_SEEDS, max_edits=4))
def test_mutated_videos_are_refused_or_decoded_within_the_limits(data: bytes) -> None:
    FUZZ_VIDEO.check(data)


# Header fields that declare sizes, counts and rates: (seed, field name, offset from the field's
# box or chunk name, byte order, width in bytes).
VIDEO_FIELDS = [
    ("seed-clip.avi", b"avih", 8 + 16, "<", 4),  # dwTotalFrames
    ("seed-clip.avi", b"avih", 8 + 32, "<", 4),  # dwWidth
    ("seed-clip.avi", b"avih", 8 + 36, "<", 4),  # dwHeight
    ("seed-clip.avi", b"strh", 8 + 20, "<", 4),  # dwScale
    ("seed-clip.avi", b"strh", 8 + 24, "<", 4),  # dwRate
    ("seed-clip.avi", b"strh", 8 + 32, "<", 4),  # dwLength
    ("seed-clip.avi", b"strf", 8 + 4, "<", 4),  # biWidth
    ("seed-clip.avi", b"strf", 8 + 8, "<", 4),  # biHeight
    ("seed-clip.mp4", b"mvhd", 4 + 12, ">", 4),  # timescale
    ("seed-clip.mp4", b"mvhd", 4 + 16, ">", 4),  # duration
    ("seed-clip.mp4", b"tkhd", 4 + 76, ">", 4),  # width (16.16)
    ("seed-clip.mp4", b"tkhd", 4 + 80, ">", 4),  # height (16.16)
    ("seed-clip.mp4", b"mdhd", 4 + 12, ">", 4),  # timescale
    ("seed-clip.mp4", b"mdhd", 4 + 16, ">", 4),  # duration
    ("seed-clip.mp4", b"mp4v", 4 + 24, ">", 2),  # sample entry width
    ("seed-clip.mp4", b"mp4v", 4 + 26, ">", 2),  # sample entry height
    ("seed-clip.mp4", b"stts", 4 + 8, ">", 4),  # sample count of the first run
    ("seed-clip.mp4", b"stsz", 4 + 8, ">", 4),  # sample count
    ("seed-clip.mov", b"tkhd", 4 + 76, ">", 4),
    ("seed-clip.mov", b"mdhd", 4 + 12, ">", 4),
]


@examples(60)
@given(st.sampled_from(VIDEO_FIELDS), st.data())
def test_video_header_fields_set_huge_are_refused_or_kept_within_the_limits(
    field: tuple[str, bytes, int, str, int], data: st.DataObject
) -> None:
    seed, name, offset, order, size = field
    top = (1 << (8 * size)) - 1
    value = data.draw(
        st.one_of(st.sampled_from([0, 1, top, top // 2, top // 2 + 1]), st.integers(0, top)), label="value"
    )
    video = bytearray(VIDEO_SEEDS[seed])
    at = video.find(name)
    assert at >= 0, name
    video[at + offset : at + offset + size] = value.to_bytes(size, "little" if order == "<" else "big")
    FUZZ_VIDEO.check(bytes(video))


@pytest.mark.parametrize("name", sorted(VIDEO_SEEDS))
def test_valid_seed_videos_are_accepted(name: str) -> None:
    from facetrace.vision.video import probe_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip"
        path.write_bytes(VIDEO_SEEDS[name])
        info = probe_video(path)
    assert (info.width, info.height, info.frame_count) == (32, 24, 4)


def test_fuzz_targets_fail_on_a_foreign_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """The targets (and so the properties above) can fail: only a FacetraceError counts as handled."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("a bug")

    monkeypatch.setattr(FUZZ_DECODE, "_decode", broken)
    with pytest.raises(TypeError):
        FUZZ_DECODE.check(b"\xff\xd8\xff")
    monkeypatch.setitem(FUZZ_MANIFEST._mod, "read_manifest", broken)
    with pytest.raises(TypeError):
        FUZZ_MANIFEST.check(b"external_id")
    monkeypatch.setattr(FUZZ_VIDEO._mod["video"], "open_video", broken)
    with pytest.raises(TypeError):
        FUZZ_VIDEO.check(VIDEO_SEEDS["seed-clip.mp4"])
