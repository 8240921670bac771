"""Width and height of an encoded image from its header, before anything is decoded.

A decoder allocates what the header announces: an 878 KB PNG can announce 30000x30000 pixels
(2.7 GB of BGR, more while decoding). Reading the size first lets a caller refuse such a file
with a clear message. Only the formats the decoders here accept are parsed: JPEG (the first
SOF frame header), PNG (IHDR), BMP (the DIB header), TIFF and BigTIFF (the first IFD, the page
OpenCV decodes), WebP (VP8, VP8L, VP8X) and binary/ASCII PNM. Nothing here allocates more than
the bytes given.
"""
from __future__ import annotations

import struct


class HeaderError(ValueError):
    """The bytes do not start like a supported image, or the header is cut off or corrupt."""


def image_format(data: bytes) -> str | None:
    """``jpeg``, ``png``, ``bmp``, ``tiff``, ``webp`` or ``pnm`` from the magic bytes; ``None`` if unknown."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if len(data) >= 2 and data[0:1] == b"P" and data[1:2] in b"123456":
        return "pnm"
    return None


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` announced by the header of ``data``.

    Parameters
    ----------
    data : bytes
        The whole file, or at least its header (the first SOF of a JPEG may sit after large
        EXIF blocks, so pass the whole file for JPEG).

    Raises
    ------
    HeaderError
        Unknown format, or a header that is cut off, corrupt or announces a size <= 0.
    """
    fmt = image_format(data)
    if fmt is None:
        raise HeaderError("not a JPEG, PNG, TIFF, BMP, WebP or PNM file")
    try:
        width, height = _PARSERS[fmt](memoryview(data))
    except (struct.error, IndexError, ValueError) as exc:
        raise HeaderError(f"{fmt.upper()} file is cut off or corrupt ({exc})") from None
    if width <= 0 or height <= 0:
        raise HeaderError(f"{fmt.upper()} header announces {width}x{height} pixels")
    return fmt, width, height


def _jpeg(data) -> tuple[int, int]:
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise ValueError(f"no marker at byte {i}")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker in (0xD9, 0xDA):  # end of image or scan data before any frame header
            break
        length = struct.unpack_from(">H", data, i)[0]
        if length < 2:
            raise ValueError(f"segment length {length} at byte {i}")
        # SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC): precision, height, width.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", data, i + 3)
            return width, height
        i += length
    raise ValueError("no frame header (SOF) before the image data")


def _png(data) -> tuple[int, int]:
    if bytes(data[12:16]) != b"IHDR":
        raise ValueError("first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    # OpenCV's PNG reader allocates each chunk's announced length before reading it: a 127-byte
    # file announcing a 2 GB IDAT took 2 GB and 8 s. Every chunk must fit in the file.
    i, n = 8, len(data)
    while i + 8 <= n:
        length = struct.unpack_from(">I", data, i)[0]
        if i + 12 + length > n:
            raise ValueError(f"chunk {bytes(data[i + 4:i + 8])!r} at byte {i} announces {length} bytes,"
                             f" past the end of the file ({n} bytes)")
        if bytes(data[i + 4:i + 8]) == b"IEND":
            break
        i += 12 + length
    return width, height


def _bmp(data) -> tuple[int, int]:
    header = struct.unpack_from("<I", data, 14)[0]
    if header == 12:  # BITMAPCOREHEADER: unsigned 16-bit sides
        width, height = struct.unpack_from("<HH", data, 18)
        return width, height
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)  # negative height: rows stored top-down


def _tiff(data) -> tuple[int, int]:
    order = "<" if bytes(data[:2]) == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    if big:
        offset = struct.unpack_from(order + "Q", data, 8)[0]
        count = struct.unpack_from(order + "Q", data, offset)[0]
        entry, first = 20, offset + 8
    else:
        offset = struct.unpack_from(order + "I", data, 4)[0]
        count = struct.unpack_from(order + "H", data, offset)[0]
        entry, first = 12, offset + 2
    found = {}
    for k in range(min(count, 4096)):
        pos = first + k * entry
        tag, kind = struct.unpack_from(order + "HH", data, pos)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3), LONG (4) or LONG8 (16)
            value_at = pos + (12 if big else 8)
            code = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if code is None:
                raise ValueError(f"tag {tag} has type {kind}")
            found[tag] = struct.unpack_from(order + code, data, value_at)[0]
            if len(found) == 2:
                return found[256], found[257]
    raise ValueError("first IFD has no ImageWidth/ImageLength")


def _webp(data) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            raise ValueError("VP8 start code missing")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("VP8L signature missing")
        bits = struct.unpack_from("<I", data, 21)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        if len(data) < 30:
            raise ValueError("VP8X chunk cut off")
        return (int.from_bytes(bytes(data[24:27]), "little") + 1,
                int.from_bytes(bytes(data[27:30]), "little") + 1)
    raise ValueError(f"unknown WebP chunk {chunk!r}")


def _pnm(data) -> tuple[int, int]:
    # "P6 <ws> width <ws> height ..." with '#' comments between tokens.
    tokens, i, n = [], 2, min(len(data), 4096)
    while len(tokens) < 2 and i < n:
        c = data[i]
        if chr(c).isspace():
            i += 1
        elif c == ord("#"):
            while i < n and data[i] not in (10, 13):
                i += 1
        else:
            start = i
            while i < n and not chr(data[i]).isspace() and data[i] != ord("#"):
                i += 1
            tokens.append(bytes(data[start:i]))
    if len(tokens) < 2 or not all(t.isdigit() for t in tokens):
        raise ValueError("width and height not found")
    return int(tokens[0]), int(tokens[1])


_PARSERS = {"jpeg": _jpeg, "png": _png, "bmp": _bmp, "tiff": _tiff, "webp": _webp, "pnm": _pnm}
