"""``mxpi_imagedecoder``: image file bytes -> ``MxpiVisionList`` (reference §3.2).

Input: the buffer data (``SendData`` with a whole JPEG/PNG/BMP file). Output: one
``MxpiVision`` under the element's name.

``cvProcessor: ascend`` (default, DVPP on Ascend): NV12 (YUV420SP) with the width aligned to
16 and the height to 2, ``format`` 1, ``dataSize = widthAligned * heightAligned * 3 / 2``,
``memType`` DVPP. The YUV is full-range BT.601 (JFIF), what DVPP's JPEG decoder returns and
what Ascend AIPP configs convert back; the alignment padding repeats the last row/column.
DVPP limits are kept: only Huffman baseline/extended JPEG (progressive, arithmetic-coded and
lossless JPEGs fail, as on Ascend), 32..8192 pixels per side.

``cvProcessor: opencv`` (``handleMethod`` is the older name of the same property): packed
``HxWx3`` uint8 in ``outputDataFormat`` order, BGR (``format`` 13, default) or RGB (12), with
no alignment (``widthAligned = width``, ``heightAligned = height``); ``dataType: float32``
gives float32 0..255 values. Any JPEG OpenCV reads is accepted.

``imageFormat`` (``jpg`` default, ``png``, ``bmp``) says what the bytes must be; other
bytes fail. A failure attaches error info (2006 JPEG, 2008 PNG/BMP) and forwards the buffer.

The image size is read from the header before decoding (``mxlocal.image_header``), so that a
small file announcing a huge image fails without the allocation: ``ascend`` keeps DVPP's side
limits, ``opencv`` accepts up to ``$MXLOCAL_DECODER_MAX_PIXELS`` pixels (default 8192x8192).
"""
from __future__ import annotations

import cv2
import numpy as np

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import errors as E
from mxlocal.image_header import HeaderError, image_size
from mxlocal.model_runtime import env_int
from mxlocal.plugin_base import PluginBase, Prop

FORMAT_NV12, FORMAT_RGB, FORMAT_BGR = 1, 12, 13
DVPP_MIN_SIDE, DVPP_MAX_SIDE = 32, 8192
ENV_MAX_PIXELS = "MXLOCAL_DECODER_MAX_PIXELS"
_MAGIC = {"jpg": b"\xff\xd8", "png": b"\x89PNG\r\n\x1a\n", "bmp": b"BM"}
_UNSUPPORTED_SOF = {0xC2: "progressive", 0xC6: "progressive", 0xCA: "progressive arithmetic-coded",
                    0xCE: "progressive arithmetic-coded", 0xC9: "arithmetic-coded", 0xCD: "arithmetic-coded",
                    0xC3: "lossless", 0xC7: "lossless", 0xCB: "lossless", 0xCF: "lossless"}


def align_up(value: int, step: int) -> int:
    return (value + step - 1) // step * step


def bgr_to_nv12(bgr: np.ndarray, width_aligned: int, height_aligned: int) -> np.ndarray:
    """Full-range BT.601 NV12 of a BGR image, padded by edge replication.

    Parameters
    ----------
    bgr : numpy.ndarray
        (H, W, 3) uint8.
    width_aligned, height_aligned : int
        Even output plane size, >= W and >= H.

    Returns
    -------
    numpy.ndarray
        (height_aligned * 3 // 2, width_aligned) uint8: the Y plane, then interleaved U, V.
    """
    h, w = bgr.shape[:2]
    padded = cv2.copyMakeBorder(bgr, 0, height_aligned - h, 0, width_aligned - w, cv2.BORDER_REPLICATE)
    ycrcb = cv2.cvtColor(padded, cv2.COLOR_BGR2YCrCb)  # JPEG (full-range) YCbCr
    out = np.empty((height_aligned * 3 // 2, width_aligned), np.uint8)
    out[:height_aligned] = ycrcb[..., 0]
    chroma = cv2.resize(ycrcb[..., 1:], (width_aligned // 2, height_aligned // 2), interpolation=cv2.INTER_AREA)
    uv = out[height_aligned:].reshape(height_aligned // 2, width_aligned // 2, 2)
    uv[..., 0] = chroma[..., 1]  # U = Cb
    uv[..., 1] = chroma[..., 0]  # V = Cr
    return out


def jpeg_coding(data: bytes) -> str | None:
    """Name of the JPEG coding when DVPP cannot decode it (progressive, ...), else ``None``."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # corrupt; leave it to the decoder
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in _UNSUPPORTED_SOF:
            return _UNSUPPORTED_SOF[marker]
        if marker in (0xC0, 0xC1, 0xDA, 0xD9):  # baseline/extended frame, or scan data reached
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


class ImageDecoder(PluginBase):
    factory = "mxpi_imagedecoder"
    properties = {
        "imageFormat": Prop("string", "jpg", choices=("jpg", "jpeg", "png", "bmp")),
        "cvProcessor": Prop("string", "ascend", choices=("ascend", "opencv")),
        "handleMethod": Prop("string", "", choices=("", "ascend", "opencv")),
        "outputDataFormat": Prop("string", "BGR", choices=("BGR", "RGB")),
        "dataType": Prop("string", "uint8", choices=("uint8", "float32")),
        "formatAdaptation": Prop("string", "off", choices=("on", "off")),
    }
    sink_pads = 1

    def init(self) -> None:
        self.image_format = "jpg" if self.props["imageFormat"] == "jpeg" else self.props["imageFormat"]
        self.processor = self.props["handleMethod"] or self.props["cvProcessor"]
        if self.processor == "ascend" and self.props["dataType"] != "uint8":
            raise self.config_error("dataType float32 needs cvProcessor opencv (DVPP outputs uint8 NV12)")

    def process(self, buffers):
        buffer = buffers[0]
        data = bytes(buffer.data)
        code = E.APP_ERR_DVPP_JPEG_DECODE_FAIL if self.image_format == "jpg" else E.APP_ERR_DVPP_PNG_DECODE_FAIL
        if not data:
            return self.forward_error(buffer, code, "input data is empty; send the image file bytes with SendData")
        if not data.startswith(_MAGIC[self.image_format]):
            return self.forward_error(buffer, code, f"input is not a {self.image_format.upper()} file"
                                      f" (imageFormat is {self.props['imageFormat']!r})")
        if self.processor == "ascend" and self.image_format == "jpg":
            coding = jpeg_coding(data)
            if coding:
                return self.forward_error(buffer, code, f"the JPEG is {coding}; DVPP decodes only Huffman"
                                          " baseline JPEG (re-save it as baseline, or use cvProcessor opencv)")
        try:
            _, w, h = image_size(data)
        except HeaderError as exc:
            return self.forward_error(buffer, code, f"cannot decode the {self.image_format.upper()} data: {exc}")
        if self.processor == "ascend":
            if not (DVPP_MIN_SIDE <= w <= DVPP_MAX_SIDE and DVPP_MIN_SIDE <= h <= DVPP_MAX_SIDE):
                return self.forward_error(buffer, code, f"image is {w}x{h}; DVPP decodes {DVPP_MIN_SIDE}.."
                                          f"{DVPP_MAX_SIDE} pixels per side")
        elif w * h > env_int(ENV_MAX_PIXELS, DVPP_MAX_SIDE * DVPP_MAX_SIDE):
            return self.forward_error(buffer, code, f"image header says {w}x{h} pixels; at most"
                                      f" {env_int(ENV_MAX_PIXELS, DVPP_MAX_SIDE * DVPP_MAX_SIDE)} are decoded"
                                      f" (${ENV_MAX_PIXELS})")
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            return self.forward_error(buffer, code, f"cannot decode the {self.image_format.upper()} data")
        h, w = bgr.shape[:2]
        vision_list = pb.MxpiVisionList()
        vision = vision_list.visionVec.add()
        info, vdata = vision.visionInfo, vision.visionData
        info.width, info.height = w, h
        if self.processor == "ascend":
            if not (DVPP_MIN_SIDE <= w <= DVPP_MAX_SIDE and DVPP_MIN_SIDE <= h <= DVPP_MAX_SIDE):
                return self.forward_error(buffer, code, f"image is {w}x{h}; DVPP decodes {DVPP_MIN_SIDE}.."
                                          f"{DVPP_MAX_SIDE} pixels per side")
            wa, ha = align_up(w, 16), align_up(h, 2)
            pixels = bgr_to_nv12(bgr, wa, ha)
            info.format = FORMAT_NV12
            vdata.memType = pb.MXPI_MEMORY_DVPP
        else:
            wa, ha = w, h
            if self.props["outputDataFormat"] == "RGB":
                pixels, info.format = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), FORMAT_RGB
            else:
                pixels, info.format = bgr, FORMAT_BGR
            if self.props["dataType"] == "float32":
                pixels = pixels.astype(np.float32)
                vdata.dataType = pb.MXPI_DATA_TYPE_FLOAT32
            vdata.memType = pb.MXPI_MEMORY_HOST_NEW
        info.widthAligned, info.heightAligned = wa, ha
        vdata.dataPtr, vdata.dataSize = buffer.attach_array(pixels)
        vdata.deviceId = self.props["deviceId"]
        buffer.metadata[self.name] = vision_list
        return [buffer]
