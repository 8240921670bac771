"""``superretina_enhance``: a decoded photograph -> SuperRetina's model input (this project's element).

The MindX SDK has no element for the fundus enhancement of method §2 (green channel, global
z-score, min-max to 0..255, CLAHE 2.0/8x8, gamma 1.2) — ``mxpi_imageresize`` resizes, and AIPP
only does per-channel mean/scale — so the decode stream runs this element between
``mxpi_imagedecoder`` and ``mxpi_tensorinfer``:

    appsrc0 -> mxpi_imagedecoder0 -> superretina_enhance0 -> mxpi_tensorinfer0 -> appsink0

Input: the ``MxpiVisionList`` of ``dataSource`` (one vision): packed BGR/RGB uint8 (format
13/12, ``cvProcessor: opencv``) or NV12/NV21 (format 1/2, DVPP's output; converted to BGR first,
so its values can differ from a host decode by the YUV round trip).

Outputs, up to three metadata entries on the buffer:

* ``<name>`` — ``MxpiTensorPackageList``, one (1, 1, resizeHeight, resizeWidth) float32 tensor
  in [0, 1]: ``enhance.model_input(enhance.equalise(image))``, the driver's own model input bit
  for bit (the enhancement runs at full size, then the resize, as the reference does);
* ``<name>_equalised`` (``outputEqualised: 1``, default) — ``MxpiVisionList``, the full-size
  uint8 CLAHE image (format 0, YUV_400/grey): what the registrar warps for the matching trick
  and draws the overlay picture with, so the driver needs no second decode;
* ``<name>_fov`` (``outputFov: 1``, default) — ``MxpiVisionList``, the photograph's field of view
  at half the model frame (``fov.half_fov``: uint8 0/1, format 0, (resizeHeight/2, resizeWidth/2)):
  the registrar erodes it by ``keypoints.fov_margin``, so it needs the decoded photograph back only
  where pictures are drawn (a FIRE photograph is 25 MB through the stream, this mask 147 KB).

Enhancement properties (defaults: the reference's; ``enhance.EnhanceSettings``, the config's
``enhance.*`` under these names): ``claheClip``, ``claheTiles``, ``gamma``, ``flatten``,
``channel`` (green | luminance). The registrar uses this stream only where they equal its
config's ``enhance`` section, so the stream and the driver always enhance alike.

Only the first vision is used (the decoder gives one per buffer).
"""
from __future__ import annotations

import cv2
import numpy as np

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal import errors as E
from mxlocal.plugin_base import PluginBase, Prop
from superretina.enhance import REFERENCE, EnhanceSettings, equalise, model_input
from superretina.fov import half_fov

FORMAT_GREY, FORMAT_NV12, FORMAT_NV21, FORMAT_RGB, FORMAT_BGR = 0, 1, 2, 12, 13
EQUALISED_SUFFIX = "_equalised"
FOV_SUFFIX = "_fov"


def grey_vision(buffer, image: np.ndarray):
    """An ``MxpiVisionList`` holding the (H, W) uint8 ``image`` (format 0, YUV_400/grey)."""
    grey = pb.MxpiVisionList()
    v = grey.visionVec.add()
    v.visionInfo.format = FORMAT_GREY
    v.visionInfo.width = v.visionInfo.widthAligned = image.shape[1]
    v.visionInfo.height = v.visionInfo.heightAligned = image.shape[0]
    v.visionData.dataPtr, v.visionData.dataSize = buffer.attach_array(image)
    v.visionData.memType = pb.MXPI_MEMORY_HOST_NEW
    return grey


def vision_bgr(buffer, vision) -> np.ndarray:
    """(H, W, 3) uint8 BGR/RGB of a decoder vision (the green channel is index 1 in both).

    Raises
    ------
    ValueError
        A format or data type this element does not take, or a data size that does not fit.
    """
    info, data = vision.visionInfo, vision.visionData
    w, h = info.width, info.height
    wa, ha = info.widthAligned or w, info.heightAligned or h
    if data.dataType == pb.MXPI_DATA_TYPE_FLOAT32:
        raise ValueError("float32 visions are not taken; decode with dataType uint8")
    raw = buffer.read_memory(data.dataPtr, data.dataSize)
    if info.format in (FORMAT_BGR, FORMAT_RGB):
        if raw.nbytes != wa * ha * 3:
            raise ValueError(f"{info.width}x{info.height} packed vision holds {raw.nbytes} bytes, expected {wa * ha * 3}")
        return raw.reshape(ha, wa, 3)[:h, :w]
    if info.format in (FORMAT_NV12, FORMAT_NV21):
        if raw.nbytes != wa * ha * 3 // 2:
            raise ValueError(f"NV12 vision holds {raw.nbytes} bytes, {wa}x{ha} needs {wa * ha * 3 // 2}")
        code = cv2.COLOR_YUV2BGR_NV12 if info.format == FORMAT_NV12 else cv2.COLOR_YUV2BGR_NV21
        return cv2.cvtColor(raw.reshape(ha * 3 // 2, wa), code)[:h, :w]
    raise ValueError(f"pixel format {info.format} is not taken (BGR 13, RGB 12, NV12 1, NV21 2)")


class SuperRetinaEnhance(PluginBase):
    factory = "superretina_enhance"
    properties = {
        "resizeHeight": Prop("uint", 768, minimum=16, maximum=4096),
        "resizeWidth": Prop("uint", 768, minimum=16, maximum=4096),
        "outputEqualised": Prop("uint", 1, maximum=1),
        "outputFov": Prop("uint", 1, maximum=1),
        # ranges as config.RULES' enhance.* (the registrar compares the two)
        "claheClip": Prop("float", REFERENCE.clahe_clip, minimum=0.001, maximum=40),
        "claheTiles": Prop("uint", REFERENCE.clahe_tiles, minimum=1, maximum=64),
        "gamma": Prop("float", REFERENCE.gamma, minimum=0.2, maximum=5),
        "flatten": Prop("float", REFERENCE.flatten, minimum=0, maximum=0.5),
        "channel": Prop("string", REFERENCE.channel, choices=("green", "luminance")),
    }
    sink_pads = 1

    def init(self) -> None:
        sources = self.data_sources()
        if len(sources) != 1:
            raise self.config_error(f"dataSource must name one key (the decoder), got {','.join(sources) or 'none'}")
        self.source = sources[0]
        self.size = (self.props["resizeHeight"], self.props["resizeWidth"])
        self.settings = EnhanceSettings.from_props(self.props)

    def process(self, buffers):
        buffer = buffers[0]
        src = buffer.metadata.get(self.source)
        if src is None or src.DESCRIPTOR.name != "MxpiVisionList" or not len(src.visionVec):
            what = "no metadata" if src is None else f"a {src.DESCRIPTOR.name} with nothing in it"
            return self.forward_error(buffer, E.APP_ERR_PLUGIN_TOOLKIT_METADATA_IS_NULL,
                                      f"dataSource '{self.source}' holds {what}; an MxpiVisionList is required")
        try:
            image = vision_bgr(buffer, src.visionVec[0])
            eq = equalise(image, self.settings)
            x = model_input(eq, self.size, self.settings.gamma)[None, None]
            fov = half_fov(image, self.size) if self.props["outputFov"] else None
        except (ValueError, KeyError, cv2.error) as exc:
            return self.forward_error(buffer, E.APP_ERR_COMM_INVALID_PARAM, f"enhancement failed: {exc}")
        tensors = pb.MxpiTensorPackageList()
        package = tensors.tensorPackageVec.add()
        header = package.headerVec.add()
        header.dataSource, header.memberId = self.source, 0
        t = package.tensorVec.add()
        t.tensorDataPtr, t.tensorDataSize = buffer.attach_array(x)
        t.tensorShape.extend(x.shape)
        t.tensorDataType = 0                       # FLOAT32
        t.memType = pb.MXPI_MEMORY_HOST_NEW
        buffer.metadata[self.name] = tensors
        if self.props["outputEqualised"]:
            buffer.metadata[self.name + EQUALISED_SUFFIX] = grey_vision(buffer, eq)
        if fov is not None:
            buffer.metadata[self.name + FOV_SUFFIX] = grey_vision(buffer, np.ascontiguousarray(fov))
        return [buffer]
