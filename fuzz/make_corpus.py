"""Rebuild the seed corpora under ``fuzz/corpus/`` (run from the repository root).

    .venv/bin/python fuzz/make_corpus.py

Seeds are small on purpose (a fuzzer mutates small inputs faster): tiny images of every
accepted format and colour mode, a real face photo from ``tests/data``, manifests that touch
every column and refusal, an import archive, and one short video per container. Files that
were added by hand (``regress-*``, crashers kept as regression seeds) are left alone.
"""

from __future__ import annotations

import io
import struct
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
FACE = ROOT / "tests" / "data" / "faces" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"


def _pattern(size: tuple[int, int] = (16, 12)) -> Image.Image:
    """A small RGB image with some structure (flat images compress to almost nothing)."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x ^ y) * 16 % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def image_seeds() -> dict[str, bytes]:
    """Return seed name -> bytes for the image decoder."""
    rgb = _pattern()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = 0
    frames = [_pattern((12, 10)), _pattern((12, 10)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    seeds = {
        "face.jpg": FACE.read_bytes(),
        "rgb.jpg": _save(rgb, "JPEG", quality=70),
        "progressive.jpg": _save(rgb, "JPEG", quality=70, progressive=True),
        "exif-rotated.jpg": _save(rgb, "JPEG", quality=70, exif=exif.tobytes()),
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG", quality=70),
        "grey.jpg": _save(rgb.convert("L"), "JPEG", quality=70),
        "rgb.png": _save(rgb, "PNG"),
        "rgba.png": _save(rgb.convert("RGBA"), "PNG"),
        "palette-transparent.png": _save(palette, "PNG"),
        "grey16.png": _save(rgb.convert("I;16"), "PNG"),
        "optimized.png": _save(rgb, "PNG", optimize=True),
        "lossy.webp": _save(rgb, "WEBP", quality=50),
        "lossless-alpha.webp": _save(rgb.convert("RGBA"), "WEBP", lossless=True),
        "rgb.bmp": _save(rgb.resize((4, 3)), "BMP"),
        "palette.bmp": _save(palette.resize((4, 3)), "BMP"),
        "raw.tif": _save(rgb.resize((4, 3)), "TIFF"),
        "lzw.tif": _save(rgb, "TIFF", compression="tiff_lzw"),
        "cmyk.tif": _save(rgb.resize((4, 3)).convert("CMYK"), "TIFF"),
        "grey16-bigendian.tif": _save(rgb.resize((4, 3)).convert("I;16B"), "TIFF"),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "one-frame.gif": _save(palette, "GIF"),
        "two-frames.mpo": _save(frames[0], "MPO", save_all=True, append_images=frames[1:], quality=70),
    }
    # A PNG whose header declares 100000 x 100000 pixels: a bomb, refused from the header.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    seeds["bomb-header.png"] = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )
    # A JPEG whose frame header (SOF0) declares 65535 x 65535 pixels.
    jpeg = bytearray(seeds["rgb.jpg"])
    sof = jpeg.find(b"\xff\xc0")
    struct.pack_into(">HH", jpeg, sof + 5, 0xFFFF, 0xFFFF)
    seeds["bomb-header.jpg"] = bytes(jpeg)
    return seeds


MANIFEST_HEADER = "external_id,name,image,source,legal_basis"


def _member(name: str, method: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    """A zip member with a fixed date, so that the seed archives are the same on every rebuild."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = method
    return info


def manifest_seeds() -> dict[str, bytes]:
    """Return seed name -> bytes for the manifest parser (CSV text, and one import archive)."""
    full = (
        MANIFEST_HEADER
        + ",collected_at,contact_name,contact_relation,contact_email,contact_phone,contact_language,notes\n"
        "r1,Ana Example,a/1.jpg;a/2.jpg,Red Cross,consent,2024-05-01,Luis,brother,l@example.org,+1 555,es,scar\n"
        "r1,Ana Example,a/3.jpg,Red Cross,consent,2024-05-01,Marta,mother,,,es,\n"
        'r2,"Doe, John ""JD""",b.jpg,"NGO\nfield office",public interest,,,,,,,"two\nlines"\n'
    )
    seeds = {
        "minimal.csv": (MANIFEST_HEADER + "\nr1,Ana,a.jpg,src,consent\n").encode(),
        "full.csv": full.encode(),
        "bom.csv": ("\ufeff" + MANIFEST_HEADER + "\nr1,Ana,a.jpg,src,consent\n").encode(),
        "crlf-spaces.csv": (b" external_id , name ,image,source,legal_basis\r\n r1 , Ana , a.jpg ,src,consent\r\n"),
        "traversal.csv": (
            MANIFEST_HEADER + "\nr1,A,../x.jpg,s,c\nr2,B,/etc/passwd,s,c\nr3,C,~/x.jpg,s,c\nr4,D,\\\\host\\x.jpg,s,c\n"
            "r5,E,a/../../x.jpg,s,c\nr6,F,ok.jpg;../../y.jpg,s,c\n"
        ).encode(),
        "missing-column.csv": b"external_id,name,image,source\nr1,Ana,a.jpg,src\n",
        "empty-fields-bad-date.csv": (
            MANIFEST_HEADER + ",collected_at\nr1,,a.jpg,s,c,\nr2,B,b.jpg,s,c,yesterday\n"
        ).encode(),
        "ragged.csv": (MANIFEST_HEADER + "\nr1,Ana,a.jpg,s,c,extra,more\nr2,Bo\n").encode(),
        "duplicate-column.csv": (MANIFEST_HEADER + ",image\nr1,Ana,a.jpg,s,c,b.jpg\n").encode(),
        "unicode.csv": (
            MANIFEST_HEADER + "\nr\u00e9,\u0410\u043d\u043d\u0430 \u5f20,\u00e9t\u00e9/\u0444.jpg,s,c\n"
        ).encode(),
        "not-utf8.csv": (MANIFEST_HEADER + "\nr1,Jos\xe9,a.jpg,s,c\n").encode("latin-1"),
        "unterminated-quote.csv": (MANIFEST_HEADER + '\nr1,"Ana,a.jpg,s,c\n').encode(),
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_member("manifest.csv"), MANIFEST_HEADER + "\nr1,Ana,photos/a.png,src,consent\n")
        zf.writestr(_member("photos/a.png"), _save(_pattern((4, 4)), "PNG"))
    seeds["import.zip"] = archive.getvalue()
    folders = io.BytesIO()
    with zipfile.ZipFile(folders, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(_member("Ana_Example/a.png", zipfile.ZIP_STORED), _save(_pattern((4, 4)), "PNG"))
    seeds["folders.zip"] = folders.getvalue()
    return seeds


def video_seeds() -> dict[str, bytes]:
    """Return seed name -> bytes for the video prober: a short, tiny clip in each container."""
    sys.path.insert(0, str(ROOT))
    from facetrace.evaluation.synthetic_video import Shot, write_video

    seeds: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in [
            ("clip.mp4", "mp4v"),
            ("clip.mov", "mp4v"),
            ("clip.webm", "VP80"),
            ("clip.avi", "MJPG"),
            ("clip_h264.mkv", "h264"),
        ]:
            path = write_video(
                Path(tmp) / name, [Shot(0.0, 0.4, seed=3)], duration_s=0.4, width=32, height=24, fps=10.0, codec=codec
            )
            seeds[name] = path.read_bytes()
    return seeds


def main() -> None:
    for target, seeds in (("decode", image_seeds()), ("manifest", manifest_seeds()), ("video", video_seeds())):
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed-{name}").write_bytes(data)
        total = sum(p.stat().st_size for p in folder.iterdir())
        print(f"{target}: {len(list(folder.iterdir()))} files, {total:,} bytes")


if __name__ == "__main__":
    main()
