"""Issue 14.3: image size bound from the header before decoding, and a fuzzed image reader.

Every input ends in an image or one ImageReadError line naming the file, never a traceback, a
hang or an allocation beyond what the header check allows.
"""
from __future__ import annotations

import collections
import random
import resource
import struct
import zlib

import cv2
import numpy as np
import pytest

from mxlocal.image_header import HeaderError, image_size
from superretina.image_io import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from tests.model_fixtures import assert_one_line_error, run_cli


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height (8-bit RGB) and whose data is one tiny deflate stream."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(ext: str, shape=(40, 60, 3), seed=0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    ok, data = cv2.imencode(ext, img)
    assert ok
    return data.tobytes()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    """The issue's file: a small PNG announcing 30000x30000 pixels (decoding it took over 8 GB)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30000, 30000))
    before = _peak_rss_mb()
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: PNG header says 30000x30000 = 900000000 pixels")
    assert f"at most {DEFAULT_MAX_PIXELS}" in message and "input.max_pixels" in message and "\n" not in message
    assert _peak_rss_mb() - before < 100  # nothing of the announced 2.7 GB was allocated


def test_limit_is_configurable(tmp_path):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.zeros((1200, 1000, 3), np.uint8))
    assert read_image(path).shape == (1200, 1000, 3)
    with pytest.raises(ImageReadError, match=r"1000x1200 = 1200000 pixels; at most 1000000"):
        read_image(path, max_pixels=1_000_000)


def test_cli_refuses_the_bomb_in_one_line_with_the_configured_limit(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30000, 30000))
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.zeros((1200, 1000, 3), np.uint8))
    proc = run_cli(bomb, ok, "--out", tmp_path / "out")
    assert_one_line_error(proc, "bomb.png: PNG header says 30000x30000")
    cfg = tmp_path / "small.yaml"
    cfg.write_text("input:\n  max_pixels: 1000000\n")
    proc = run_cli(ok, ok, "--out", tmp_path / "out", "--config", cfg)
    assert_one_line_error(proc, "ok.png: PNG header says 1000x1200", "at most 1000000")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"])
def test_header_size_matches_what_opencv_decodes(ext):
    data = _encoded(ext)
    fmt, width, height = image_size(data)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert (height, width) == decoded.shape[:2], fmt


def test_header_size_of_other_encodings():
    gray16 = cv2.imencode(".png", np.zeros((33, 17), np.uint16))[1].tobytes()
    assert image_size(gray16) == ("png", 17, 33)
    progressive = cv2.imencode(".jpg", np.zeros((50, 70, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert image_size(progressive) == ("jpeg", 70, 50)
    lossless_webp = cv2.imencode(".webp", np.zeros((21, 35, 3), np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert image_size(lossless_webp) == ("webp", 35, 21)
    big_endian_tiff = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 2) + struct.pack(">HHII", 256, 4, 1, 300) \
        + struct.pack(">HHIHH", 257, 3, 1, 200, 0) + b"\0" * 4
    assert image_size(big_endian_tiff) == ("tiff", 300, 200)
    assert image_size(b"P5\n# comment\n 12 7\n255\n" + b"\0" * 84) == ("pnm", 12, 7)


# -- fuzz ------------------------------------------------------------------------------------
def _mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.randrange(5)
    buf = bytearray(data)
    if kind == 0:  # truncated
        return "truncated", bytes(buf[:rng.randrange(1, len(buf))])
    if kind == 1:  # random byte flips anywhere
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return "corrupt", bytes(buf)
    if kind == 2:  # hostile header: flips within the first 64 bytes, where the sizes live
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(min(64, len(buf)))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        return "hostile header", bytes(buf)
    if kind == 3:  # huge announced size in a valid-looking header
        w, h = rng.choice([(30000, 30000), (65535, 65535), (2 ** 31 - 1, 1), (1, 2 ** 31 - 1), (0, 100), (100, 0)])
        return "huge header", _png_header_only(w, h)
    return "garbage", bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))


def test_fuzz_image_reader(tmp_path):
    """Truncated, corrupt and hostile-header files of every format: an image or one error line."""
    rng = random.Random(2024)
    seeds = [_encoded(ext, seed=i) for i, ext in enumerate([".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"])]
    seeds.append(cv2.imencode(".png", np.zeros((40, 30), np.uint16))[1].tobytes())
    outcomes = collections.Counter()
    path = tmp_path / "fuzz.img"
    start_rss = _peak_rss_mb()
    n = 700
    for i in range(n):
        what, data = _mutate(rng, seeds[i % len(seeds)])
        path.write_bytes(data)
        try:
            image = read_image(path, max_pixels=4_000_000)
        except ImageReadError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            outcomes[(what, "error")] += 1
            continue
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype in (np.uint8, np.uint16)
        assert image.shape[0] * image.shape[1] <= 4_000_000
        outcomes[(what, "image")] += 1
    grown = _peak_rss_mb() - start_rss
    summary = ", ".join(f"{w}: {o} {c}" for (w, o), c in sorted(outcomes.items()))
    print(f"\nimage reader fuzz (seed 2024): {n} files; {summary}; peak RSS grew {grown:.0f} MB")
    assert grown < 300


def test_fuzz_header_parser_never_raises_other_errors():
    rng = random.Random(5)
    seeds = [_encoded(ext, seed=i) for i, ext in enumerate([".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"])]
    counts = collections.Counter()
    for i in range(3000):
        _, data = _mutate(rng, seeds[i % len(seeds)])
        try:
            fmt, w, h = image_size(data)
            assert w > 0 and h > 0
            counts["size"] += 1
        except HeaderError:
            counts["HeaderError"] += 1
    print(f"\nheader parser fuzz (seed 5): 3000 inputs, {dict(counts)}")


@pytest.mark.parametrize("processor", ["ascend", "opencv"])
def test_decoder_plugin_refuses_the_bomb_from_its_header(api, processor):
    """mxpi_imagedecoder decodes user bytes too: the announced size is checked before decoding."""
    from mxlocal_support import data_input, pipeline

    middle = {"mxpi_imagedecoder0": ("mxpi_imagedecoder", {"imageFormat": "png", "cvProcessor": processor})}
    assert api.CreateMultipleStreams(pipeline("dec", middle)) == 0
    before = _peak_rss_mb()
    assert api.SendData(b"dec", 0, data_input(_png_header_only(30000, 30000))) == 0
    result = api.GetResult(b"dec", 0, 10000)
    assert result.errorCode == 2008, result.data
    assert b"30000x30000" in result.data
    assert _peak_rss_mb() - before < 100
    # A chunk announcing more bytes than the file holds (OpenCV allocated the announced 2 GB).
    lying = bytearray(_encoded(".png"))
    lying[33:37] = (2 ** 31).to_bytes(4, "big")  # the length of the chunk after IHDR
    assert api.SendData(b"dec", 0, data_input(bytes(lying))) == 0
    result = api.GetResult(b"dec", 0, 10000)
    assert result.errorCode == 2008 and b"past the end of the file" in result.data, result.data
    assert _peak_rss_mb() - before < 100


def test_corrupt_jpeg_through_cli_is_exactly_one_line(tmp_path):
    """libjpeg prints "Corrupt JPEG data" on stderr itself; the CLI shows only its own line."""
    data = _encoded(".jpg", shape=(300, 300, 3))
    path = tmp_path / "flip.jpg"
    path.write_bytes(data[:600] + bytes(50) + data[650:])
    proc = run_cli(path, path, "--out", tmp_path / "out")
    assert_one_line_error(proc, f"{path}: not a readable image")
