"""Vision layer on real faces: decoding every accepted format and refusing every bad input,
detection boxes in original coordinates, quality ordering, and embeddings."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from facetrace.config import get_settings
from facetrace.errors import FacetraceError, ImageError, ImageTooLargeError
from facetrace.gallery import Gallery
from facetrace.vision import decode_image, get_analyzer, load_image, models
from facetrace.vision.pipeline import Face

FACES = Path(__file__).resolve().parent / "data" / "faces"
# A sharp, frontal face (quality ~90) used as the source of generated inputs.
FACE_JPEG = FACES / "Bill_Paxton" / "Bill_Paxton_0004.jpg"


@cache
def _face_rgb() -> Image.Image:
    with Image.open(FACE_JPEG) as img:
        return img.convert("RGB")


@cache
def _reference_face() -> Face:
    faces = get_analyzer().analyze_file(FACE_JPEG)
    assert faces, "the reference image must hold a face"
    return faces[0]


def _encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _largest_face(data: bytes) -> Face:
    faces = get_analyzer().analyze(decode_image(data))
    assert faces, "no face found"
    return faces[0]


def _similarity(a: Face, b: Face) -> float:
    return float(np.dot(a.embedding, b.embedding))


# -- decoding: every accepted format ------------------------------------------------------------


def _gif_two_frames() -> bytes:
    # First frame: the face; second frame: black. Only the first must be used.
    face = _face_rgb().quantize(256)
    black = Image.new("RGB", face.size).quantize(256)
    buf = io.BytesIO()
    face.save(buf, "GIF", save_all=True, append_images=[black], duration=100, loop=0)
    return buf.getvalue()


def _png_16bit() -> bytes:
    grey = np.asarray(_face_rgb().convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    return _encode(Image.fromarray(grey), "PNG")


def _png_rgba() -> bytes:
    rgba = _face_rgb().convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 20, 20))  # a fully transparent corner
    rgba.putalpha(alpha)
    return _encode(rgba, "PNG")


FORMATS = {
    "jpeg": lambda: FACE_JPEG.read_bytes(),
    "png": lambda: _encode(_face_rgb(), "PNG"),
    "webp": lambda: _encode(_face_rgb(), "WEBP", quality=95),
    "bmp": lambda: _encode(_face_rgb(), "BMP"),
    "tiff": lambda: _encode(_face_rgb(), "TIFF", compression="tiff_lzw"),
    "gif-first-frame": _gif_two_frames,
    "grayscale-jpeg": lambda: _encode(_face_rgb().convert("L"), "JPEG", quality=95),
    "cmyk-jpeg": lambda: _encode(_face_rgb().convert("CMYK"), "JPEG", quality=95),
    "rgba-png": _png_rgba,
    "16bit-png": _png_16bit,
    "palette-png": lambda: _encode(_face_rgb().quantize(256), "PNG"),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_decode_every_format_gives_rgb_and_the_same_face(fmt: str) -> None:
    data = FORMATS[fmt]()
    image = decode_image(data, name=f"face.{fmt}")
    assert image.dtype == np.uint8
    assert image.shape == (250, 250, 3)
    original = np.asarray(_face_rgb(), dtype=np.float64)
    if fmt in ("grayscale-jpeg", "16bit-png"):
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
        original = np.repeat(np.asarray(_face_rgb().convert("L"), dtype=np.float64)[..., None], 3, axis=2)
    # The pixels are those of the face (not a black GIF frame, not inverted CMYK, not a dark 16-bit image).
    difference = np.abs(image.astype(np.float64) - original)
    if fmt == "rgba-png":
        assert (image[:20, :20] == 255).all(), "transparent pixels are composited on white"
        difference = difference[20:, 20:]
    assert difference.mean() < 12, f"{fmt}: mean pixel difference {difference.mean():.1f}"
    # And the face pipeline finds the same person in it.
    assert _similarity(_largest_face(data), _reference_face()) > 0.9


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A 250x200 (wide) face, stored rotated 90 degrees with EXIF Orientation=6 ("rotate 90 CW to view").
    upright = _face_rgb().crop((0, 25, 250, 225))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: the face lies on its side
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (200, 250)  # as stored: tall

    image = load_image(path)
    assert image.shape == (200, 250, 3)  # as viewed: wide, upright
    rotated_faces = get_analyzer().analyze(image)
    upright_faces = get_analyzer().analyze(np.asarray(upright))
    assert rotated_faces and upright_faces
    # The box is reported in the upright image's coordinates.
    assert np.abs(np.subtract(rotated_faces[0].box, upright_faces[0].box)).max() <= 6
    assert _similarity(rotated_faces[0], upright_faces[0]) > 0.95


# -- decoding: every bad input -------------------------------------------------------------------


BAD_INPUTS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty file"),
    "text-named-jpg": (b"name,photo\nAda,ada.jpg\n", "not a supported image"),
    "random-bytes": (bytes(range(256)) * 8, "not a supported image"),
    "jpeg-magic-then-garbage": (b"\xff\xd8\xff\xe0" + b"\x13" * 600, "cannot decode"),
    "png-magic-then-garbage": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, ""),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_image_error(kind: str, tmp_path: Path) -> None:
    data, expected = BAD_INPUTS[kind]
    path = tmp_path / f"{kind}.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert not isinstance(info.value, ImageTooLargeError)
    assert info.value.code == "bad_image" and info.value.status == 422
    assert info.value.message.startswith(f"{kind}.jpg: ")
    assert expected in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's note on the cut TIFF
@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif-first-frame", "tiff"])
def test_truncated_file_is_refused(fmt: str, tmp_path: Path) -> None:
    data = FORMATS[fmt]()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.message.startswith(f"cut.{fmt}: ")
    assert not isinstance(info.value, ImageTooLargeError)


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        # 400 MP: Pillow's own guard (twice its 89 MP warning level) stops it when opening.
        (20_000, "400000000 pixels"),
        # 64 MP: under Pillow's guard, over facetrace's default 50 MP limit.
        (8_000, "8000x8000 pixels exceeds the limit of 50,000,000 pixels"),
    ],
)
def test_decompression_bomb_is_refused_before_decoding(
    side: int, expected: str, tmp_path: Path, bomb_png: Callable[[int, int], bytes]
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(side, side))
    assert path.stat().st_size < 200_000  # tiny on disk, huge when decoded
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as info:
        load_image(path)
    assert time.perf_counter() - started < 2.0, "the pixel limit must be checked from the header"
    assert info.value.code == "image_too_large" and info.value.status == 413
    assert info.value.message.startswith("bomb.png: ")
    assert expected in info.value.message
    assert isinstance(info.value, ImageError)  # callers catching ImageError also catch bombs


def test_pixel_limit_is_configurable(monkeypatch: pytest.MonkeyPatch, tmp_home: Path) -> None:
    data = FACE_JPEG.read_bytes()
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=250 * 250 - 1)
    assert decode_image(data, max_pixels=250 * 250).shape == (250, 250, 3)
    # Through settings: FACETRACE_MAX_PIXELS reaches the gallery's decoder.
    monkeypatch.setenv("FACETRACE_MAX_PIXELS", "10000")
    gallery = Gallery(get_settings())
    try:
        with pytest.raises(ImageTooLargeError):
            gallery.search(data, name="face.jpg")
    finally:
        gallery.close()


def test_missing_file_and_folder_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_every_image_error_is_a_facetrace_error() -> None:
    # The CLI and the API turn FacetraceError into a one-line error / a 4xx JSON body.
    assert issubclass(ImageError, FacetraceError)
    assert issubclass(ImageTooLargeError, ImageError)


# -- detection -----------------------------------------------------------------------------------


def test_boxes_are_in_original_coordinates_for_a_large_image() -> None:
    small = _reference_face()
    big_rgb = np.asarray(_face_rgb().resize((2500, 2500), Image.Resampling.BICUBIC))
    faces = get_analyzer().analyze(big_rgb)
    assert len(faces) == 1
    big = faces[0]
    # Exact mapping: HOG on a 1024-px working copy, scaled back by 2500/1024.
    work = cv2.resize(big_rgb, (1024, 1024), interpolation=cv2.INTER_AREA)
    rects, _, _ = models.hog_detector().run(work, 0, 0.0)
    assert len(rects) == 1
    r = rects[0]
    expected = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) * (2500 / 1024)
    assert np.abs(np.array(big.box) - expected).max() <= 2, (big.box, expected)
    # And the face is where the 250-px image has it, ten times larger. HOG boxes come from a
    # pyramid with 20% steps, so box sizes vary by that much; landmarks are finer.
    side = big.box[2] - big.box[0]
    small_side = small.box[2] - small.box[0]
    assert 0.75 < side / (10 * small_side) < 1.35
    assert np.abs(np.array(big.landmarks) - 10 * np.array(small.landmarks)).max() < 0.05 * side
    assert all(0 <= v <= 2500 for v in big.box)
    left, top, right, bottom = big.box
    assert all(left <= x <= right and top <= y <= bottom for x, y in big.landmarks)
    assert big.quality.eye_distance_px > 8 * small.quality.eye_distance_px
    assert _similarity(big, small) > 0.9


def test_several_faces_in_one_image(special_dir: Path) -> None:
    faces = get_analyzer().analyze_file(special_dir / "group_of_three.jpg")
    assert len(faces) == 3
    lefts = sorted(f.box[0] for f in faces)
    assert lefts[0] < 180 < lefts[1] < 360 < lefts[2]  # one face in each third
    assert all(f.quality.score > 50 for f in faces)
    # Largest first.
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_no_face_gives_an_empty_list(special_dir: Path) -> None:
    assert get_analyzer().analyze_file(special_dir / "no_face.png") == []


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 9), (500, 7), (1, 4000), (4000, 1), (19, 19)])
@pytest.mark.parametrize("detector", ["hog", "cnn"])
def test_tiny_and_thin_images_have_no_face_and_no_crash(shape: tuple[int, int], detector: str) -> None:
    # dlib's CNN raised (then corrupted its heap) on images under ~10 px a side; HOG falls back to it.
    data = _encode(Image.new("RGB", (shape[1], shape[0]), (128, 128, 128)), "PNG")
    assert get_analyzer(detector).analyze(decode_image(data)) == []  # type: ignore[arg-type]


def test_hog_and_cnn_detectors_agree_on_a_clear_face() -> None:
    image = np.asarray(_face_rgb())
    hog = get_analyzer("hog").analyze(image)
    cnn = get_analyzer("cnn").analyze(image)
    assert hog and cnn
    assert hog[0].detector == "hog" and cnn[0].detector == "cnn"
    # Different detectors, same face: landmark alignment makes the templates nearly equal.
    assert _similarity(hog[0], cnn[0]) > 0.9


# -- quality -------------------------------------------------------------------------------------


def test_quality_falls_for_blurred_and_downscaled_faces() -> None:
    original = _reference_face().quality
    blurred = _largest_face(_encode(_face_rgb().filter(ImageFilter.GaussianBlur(3)), "PNG")).quality
    small = _face_rgb().resize((110, 110), Image.Resampling.LANCZOS)
    downscaled = _largest_face(_encode(small, "PNG")).quality
    assert 0 <= downscaled.score < original.score <= 100
    assert 0 <= blurred.score < original.score
    assert blurred.sharpness < original.sharpness / 2
    assert downscaled.eye_distance_px < original.eye_distance_px / 2
    assert original.score > 70  # a clear frontal face
    assert abs(original.yaw_deg) < 25


# -- embeddings ----------------------------------------------------------------------------------


SAME_PERSON_IDENTITIES = ["Ashanti", "Elton_John", "Julie_Gerberding", "Lance_Armstrong", "Naoto_Kan", "Rob_Lowe"]


@pytest.fixture(scope="module")
def two_faces_each() -> dict[str, list[Face]]:
    """The largest face of the first two images of a few identities."""
    analyzer = get_analyzer()
    out = {}
    for name in SAME_PERSON_IDENTITIES:
        paths = sorted((FACES / name).glob("*.jpg"))[:2]
        out[name] = [analyzer.analyze_file(p, largest_only=True)[0] for p in paths]
    return out


def test_embeddings_are_unit_norm_float32(two_faces_each: dict[str, list[Face]]) -> None:
    for faces in two_faces_each.values():
        for face in faces:
            assert face.embedding.dtype == np.float32
            assert face.embedding.shape == (128,)
            assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
            assert face.model_id == get_analyzer().model_id


def test_same_person_scores_higher_than_different_people(two_faces_each: dict[str, list[Face]]) -> None:
    names = list(two_faces_each)
    genuine = {n: _similarity(*two_faces_each[n]) for n in names}
    impostor = [
        _similarity(a, b)
        for i, n in enumerate(names)
        for m in names[i + 1 :]
        for a in two_faces_each[n]
        for b in two_faces_each[m]
    ]
    # Each person's two photos are closer than the closest pair of different people.
    assert min(genuine.values()) > max(impostor), (genuine, max(impostor))
    assert np.mean(list(genuine.values())) - np.mean(impostor) > 0.1
