"""``mxpi_imageresize``: ``MxpiVisionList`` -> resized ``MxpiVisionList`` (reference §3.2).

Works on what ``mxpi_imagedecoder`` produces: NV12/NV21 (``format`` 1/2; the Y and the
interleaved UV planes are resized separately, output aligned like DVPP: width to 16, height to
2) and packed BGR/RGB (``format`` 13/12, uint8 or float32; output not aligned). The output
keeps the input format.

``resizeHeight`` [6, 4096] and ``resizeWidth`` [32, 4096] are required here (the SDK's default
of "the downstream model's input size" is not available). ``resizeType``:
``Resizer_Stretch`` (default) or ``Resizer_KeepAspectRatio_Fit`` (scale to fit, pad
``paddingType`` Padding_RightDown (default) or Padding_Around with black;
``keepAspectRatioScaling`` records the scale). ``interpolation``: 1 bilinear, 2 nearest, 0 (the
SDK's default high-order filter) is approximated by OpenCV's area filter. Each output vision
has ``headerVec {dataSource, memberId}`` and one ``preprocessInfo`` entry describing the
resize and paste.
"""
from __future__ import annotations

import cv2
import numpy as np

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import errors as E
from mxlocal.plugin_base import PluginBase, Prop

FORMAT_NV12, FORMAT_NV21, FORMAT_RGB, FORMAT_BGR = 1, 2, 12, 13
RESIZE_TYPES = {"Resizer_Stretch": 0, "Resizer_KeepAspectRatio_FastRCNN": 1, "Resizer_KeepAspectRatio_Fit": 2,
                "Resizer_OnlyPadding": 3, "Resizer_KeepAspectRatio_Long": 4, "Resizer_KeepAspectRatio_Short": 5,
                "Resizer_Rescale": 6, "Resizer_Rescale_Double": 7, "Resizer_MS_Yolov4": 8, "Resizer_PaddleOCR": 9}
SUPPORTED_TYPES = ("Resizer_Stretch", "Resizer_KeepAspectRatio_Fit")
INTERPOLATION = {0: cv2.INTER_AREA, 1: cv2.INTER_LINEAR, 2: cv2.INTER_NEAREST}


def align_up(value: int, step: int) -> int:
    return (value + step - 1) // step * step


class ImageResize(PluginBase):
    factory = "mxpi_imageresize"
    properties = {
        "resizeHeight": Prop("uint", 0, maximum=4096),
        "resizeWidth": Prop("uint", 0, maximum=4096),
        "resizeType": Prop("string", "Resizer_Stretch", choices=tuple(RESIZE_TYPES)),
        "paddingType": Prop("string", "Padding_NO", choices=("Padding_NO", "Padding_RightDown", "Padding_Around")),
        "interpolation": Prop("uint", 0, maximum=2),
        "cvProcessor": Prop("string", "ascend", choices=("ascend", "opencv")),
        "handleMethod": Prop("string", "", choices=("", "ascend", "opencv")),
        "removeParentData": Prop("uint", 0, maximum=1),
        "parentName": Prop("string", ""),
        "RGBValue": Prop("string", ""),
    }
    sink_pads = 1

    def init(self) -> None:
        h, w = self.props["resizeHeight"], self.props["resizeWidth"]
        if not (6 <= h <= 4096 and 32 <= w <= 4096):
            raise self.config_error(f"resizeHeight={h} and resizeWidth={w} must be set, height in [6, 4096] and"
                                    " width in [32, 4096] (the local runtime cannot default them to the model size)")
        kind = self.props["resizeType"]
        if kind not in SUPPORTED_TYPES:
            raise self.config_error(f"resizeType {kind} is not supported by the local runtime"
                                    f" (supported: {', '.join(SUPPORTED_TYPES)})")
        self.fit = kind == "Resizer_KeepAspectRatio_Fit"
        self.around = self.props["paddingType"] == "Padding_Around"
        self.flag = INTERPOLATION[self.props["interpolation"]]
        sources = self.data_sources()
        if len(sources) != 1:
            raise self.config_error(f"dataSource must name one key, got {','.join(sources) or 'none'}")
        self.source = sources[0]

    def process(self, buffers):
        buffer = buffers[0]
        src = buffer.metadata.get(self.source)
        if src is None or src.DESCRIPTOR.name != "MxpiVisionList":
            what = "no metadata" if src is None else f"a {src.DESCRIPTOR.name}"
            return self.forward_error(buffer, E.APP_ERR_PLUGIN_TOOLKIT_METADATA_IS_NULL,
                                      f"dataSource '{self.source}' holds {what}; an MxpiVisionList is required")
        out = pb.MxpiVisionList()
        for member, vision in enumerate(src.visionVec):
            try:
                self._resize(buffer, vision, out.visionVec.add(), member)
            except (ValueError, KeyError) as exc:
                return self.forward_error(buffer, E.APP_ERR_DVPP_RESIZE_FAIL, f"resize of vision {member} failed: {exc}")
        buffer.metadata[self.name] = out
        return [buffer]

    # ---- one image ---------------------------------------------------------------------------
    def _resize(self, buffer, vision, result, member: int) -> None:
        info, data = vision.visionInfo, vision.visionData
        w, h = info.width, info.height
        wa, ha = info.widthAligned or w, info.heightAligned or h
        raw = buffer.read_memory(data.dataPtr, data.dataSize)
        rw, rh = self.props["resizeWidth"], self.props["resizeHeight"]
        nw, nh, left, top, scale = self._placement(w, h, rw, rh)
        yuv = info.format in (FORMAT_NV12, FORMAT_NV21)
        if yuv:
            out_wa, out_ha = align_up(rw, 16), align_up(rh, 2)
            if raw.nbytes != wa * ha * 3 // 2:
                raise ValueError(f"NV12 data holds {raw.nbytes} bytes, {wa}x{ha} needs {wa * ha * 3 // 2}")
            pixels = self._resize_yuv(raw.reshape(ha * 3 // 2, wa), w, h, wa, ha, nw, nh, left, top, out_wa, out_ha)
        elif info.format in (FORMAT_RGB, FORMAT_BGR):
            out_wa, out_ha = rw, rh
            dtype = np.float32 if data.dataType == pb.MXPI_DATA_TYPE_FLOAT32 else np.uint8
            image = raw.view(dtype).reshape(ha, wa, 3)[:h, :w]
            pixels = np.zeros((rh, rw, 3), dtype)
            pixels[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=self.flag)
        else:
            raise ValueError(f"pixel format {info.format} is not supported (NV12/NV21/RGB/BGR only)")

        header = result.headerVec.add()
        header.dataSource, header.memberId = self.source, member
        out_info, out_data = result.visionInfo, result.visionData
        out_info.format, out_info.width, out_info.height = info.format, rw, rh
        out_info.widthAligned, out_info.heightAligned = out_wa, out_ha
        out_info.resizeType = RESIZE_TYPES[self.props["resizeType"]]
        out_info.keepAspectRatioScaling = scale
        pre = out_info.preprocessInfo.add()
        pre.widthSrc, pre.heightSrc = w, h
        pre.cropLeft, pre.cropRight, pre.cropTop, pre.cropBottom = 0, w, 0, h
        pre.pasteLeft, pre.pasteRight, pre.pasteTop, pre.pasteBottom = left, left + nw, top, top + nh
        pre.interpolation = self.props["interpolation"]
        pre.elementName = self.name
        out_data.dataPtr, out_data.dataSize = buffer.attach_array(pixels)
        out_data.deviceId = data.deviceId
        out_data.memType = data.memType
        out_data.dataType = data.dataType

    def _placement(self, w: int, h: int, rw: int, rh: int):
        """Resized size, paste offset and scale: ``(nw, nh, left, top, scale)``."""
        if not self.fit:
            return rw, rh, 0, 0, 0.0
        scale = min(rw / w, rh / h)
        nw, nh = max(1, min(rw, round(w * scale))), max(1, min(rh, round(h * scale)))
        if self.around:
            return nw, nh, (rw - nw) // 2 // 2 * 2, (rh - nh) // 2 // 2 * 2, scale
        return nw, nh, 0, 0, scale

    def _resize_yuv(self, planes, w, h, wa, ha, nw, nh, left, top, out_wa, out_ha):
        y = planes[:ha, :wa][:h, :w]
        uv = planes[ha:].reshape(ha // 2, wa // 2, 2)[:(h + 1) // 2, :(w + 1) // 2]
        out = np.empty((out_ha * 3 // 2, out_wa), np.uint8)
        out[:out_ha] = 0
        out_uv = out[out_ha:].reshape(out_ha // 2, out_wa // 2, 2)
        out_uv[:] = 128  # black in full-range YUV
        out[top:top + nh, left:left + nw] = cv2.resize(y, (nw, nh), interpolation=self.flag)
        cw, ch = (nw + 1) // 2, (nh + 1) // 2
        out_uv[top // 2:top // 2 + ch, left // 2:left // 2 + cw] = cv2.resize(
            np.ascontiguousarray(uv), (cw, ch), interpolation=self.flag)
        return out
