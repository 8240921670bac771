"""mxpi_imagedecoder / mxpi_imageresize / mxpi_dataserialize on images (reference §3.2, §3.3)."""
from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from mxlocal import MxpiDataType_pb2 as pb
from mxlocal_support import call_with_timeout, data_input, keys, pipeline, protobuf_in


@pytest.fixture(scope="module")
def image():
    """A smooth 61x77 BGR test picture (odd sizes exercise the alignment)."""
    yy, xx = np.mgrid[0:61, 0:77]
    bgr = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1) % 256
    return bgr.astype(np.uint8)


def _jpeg(bgr, *params) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95, *params])
    assert ok
    return data.tobytes()


def _vision(api, stream: bytes, key: bytes, data: bytes):
    assert api.SendData(stream, 0, data_input(data)) == 0
    out = call_with_timeout(api.GetProtobuf, stream, 0, keys(key))
    if out.size() == 0:
        return None
    msg = pb.MxpiVisionList()
    msg.ParseFromString(out[0].messageBuf)
    return msg.visionVec[0]


def _decoder(api, name: str, **props):
    middle = {"mxpi_imagedecoder0": ("mxpi_imagedecoder", {k: str(v) for k, v in props.items()})}
    assert api.CreateMultipleStreams(pipeline(name, middle)) == 0


def test_ascend_decoder_nv12_layout_and_values(api, image):
    _decoder(api, "dec")
    jpeg = _jpeg(image)
    vision = _vision(api, b"dec", b"mxpi_imagedecoder0", jpeg)
    info, data = vision.visionInfo, vision.visionData
    assert (info.format, info.width, info.height, info.widthAligned, info.heightAligned) == (1, 77, 61, 80, 62)
    assert len(data.dataStr) == data.dataSize == 80 * 62 * 3 // 2
    assert data.memType == pb.MXPI_MEMORY_DVPP
    nv12 = np.frombuffer(data.dataStr, np.uint8).reshape(62 * 3 // 2, 80)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    ycrcb = cv2.cvtColor(decoded, cv2.COLOR_BGR2YCrCb).astype(np.float32)  # cv2's JPEG-range BGR->YUV
    np.testing.assert_allclose(nv12[:61, :77], ycrcb[..., 0], atol=1)
    uv = nv12[62:].reshape(31, 40, 2).astype(np.float32)
    cb = cv2.resize(ycrcb[:60, :76, 2], (38, 30), interpolation=cv2.INTER_AREA)
    cr = cv2.resize(ycrcb[:60, :76, 1], (38, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(uv[:30, :38, 0], cb, atol=2)
    np.testing.assert_allclose(uv[:30, :38, 1], cr, atol=2)
    # NV12 -> BGR with the full-range BT.601 inverse gives the picture back
    y = nv12[:62].astype(np.float32)
    u = np.repeat(np.repeat(uv[..., 0], 2, 0), 2, 1) - 128
    v = np.repeat(np.repeat(uv[..., 1], 2, 0), 2, 1) - 128
    bgr = np.stack([y + 1.772 * u, y - 0.344136 * u - 0.714136 * v, y + 1.402 * v], axis=-1)
    assert np.abs(bgr[:61, :77] - decoded).mean() < 3


def test_opencv_decoder_bgr_rgb_float(api, image):
    jpeg = _jpeg(image)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    _decoder(api, "bgr", cvProcessor="opencv", outputDataFormat="BGR")
    vision = _vision(api, b"bgr", b"mxpi_imagedecoder0", jpeg)
    info = vision.visionInfo
    assert (info.format, info.width, info.height, info.widthAligned, info.heightAligned) == (13, 77, 61, 77, 61)
    np.testing.assert_array_equal(np.frombuffer(vision.visionData.dataStr, np.uint8).reshape(61, 77, 3), decoded)
    _decoder(api, "rgb", handleMethod="opencv", outputDataFormat="RGB")
    vision = _vision(api, b"rgb", b"mxpi_imagedecoder0", jpeg)
    assert vision.visionInfo.format == 12
    np.testing.assert_array_equal(np.frombuffer(vision.visionData.dataStr, np.uint8).reshape(61, 77, 3),
                                  decoded[..., ::-1])
    _decoder(api, "f32", cvProcessor="opencv", dataType="float32")
    vision = _vision(api, b"f32", b"mxpi_imagedecoder0", jpeg)
    assert vision.visionData.dataType == pb.MXPI_DATA_TYPE_FLOAT32
    np.testing.assert_array_equal(np.frombuffer(vision.visionData.dataStr, np.float32).reshape(61, 77, 3), decoded)


def test_progressive_jpeg_rejected_by_dvpp_only(api, image):
    progressive = _jpeg(image, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    _decoder(api, "dvpp")
    assert api.SendData(b"dvpp", 0, data_input(progressive)) == 0
    result = api.GetResult(b"dvpp", 0, 5000)
    assert result.errorCode == 2006 and b"progressive" in result.data
    _decoder(api, "cv", cvProcessor="opencv")
    assert _vision(api, b"cv", b"mxpi_imagedecoder0", progressive).visionInfo.width == 77


def test_undecodable_and_wrong_format_forward_error(api, image):
    _decoder(api, "err")
    for data, text in ((b"\xff\xd8 not really a jpeg", b"cannot decode"), (b"GIF89a...", b"not a JPG"),
                       (_jpeg(image[:20, :20]), b"32..8192")):
        assert api.SendData(b"err", 0, data_input(data)) == 0
        result = api.GetResult(b"err", 0, 5000)
        assert result.errorCode == 2006 and text in result.data, result.data
    assert api.SendData(b"err", 0, data_input(_jpeg(image))) == 0
    out = call_with_timeout(api.GetProtobuf, b"err", 0, keys(b"mxpi_imagedecoder0"))
    assert out.size() == 1 and out[0].errorCode == 0  # the stream keeps working


def test_png_with_image_format(api, image):
    ok, png = cv2.imencode(".png", image)
    _decoder(api, "png", imageFormat="png", cvProcessor="opencv")
    vision = _vision(api, b"png", b"mxpi_imagedecoder0", png.tobytes())
    np.testing.assert_array_equal(np.frombuffer(vision.visionData.dataStr, np.uint8).reshape(61, 77, 3), image)


def test_decode_stream_flow(api, image):
    """A decode stream as the SDK samples build it: appsrc0 -> decoder (opencv, BGR) -> appsink0, GetProtobuf."""
    _decoder(api, "decode", cvProcessor="opencv", outputDataFormat="BGR")
    jpeg = _jpeg(image)
    for _ in range(3):
        assert api.SendData(b"decode", 0, data_input(jpeg)) == 0
    for _ in range(3):
        out = call_with_timeout(api.GetProtobuf, b"decode", 0, keys(b"mxpi_imagedecoder0"))
        vl = pb.MxpiVisionList()
        vl.ParseFromString(out[0].messageBuf)
        info = vl.visionVec[0].visionInfo
        img = np.frombuffer(vl.visionVec[0].visionData.dataStr, np.uint8).reshape(info.heightAligned, info.widthAligned, 3)
        assert img.shape == (61, 77, 3)


@pytest.mark.parametrize("processor", ["ascend", "opencv"])
def test_resize_stretch_and_fit(api, image, processor):
    middle = {"mxpi_imagedecoder0": ("mxpi_imagedecoder", {"cvProcessor": processor}),
              "mxpi_imageresize0": ("mxpi_imageresize", {"resizeWidth": "40", "resizeHeight": "30", "interpolation": "2"}),
              "mxpi_imageresize1": ("mxpi_imageresize", {"dataSource": "mxpi_imagedecoder0", "resizeWidth": "64",
                                                          "resizeHeight": "64", "resizeType": "Resizer_KeepAspectRatio_Fit"})}
    assert api.CreateMultipleStreams(pipeline("rs", middle)) == 0
    jpeg = _jpeg(image)
    assert api.SendData(b"rs", 0, data_input(jpeg)) == 0
    out = call_with_timeout(api.GetProtobuf, b"rs", 0, keys(b"mxpi_imagedecoder0", b"mxpi_imageresize0", b"mxpi_imageresize1"))
    assert [o.messageName for o in out] == [b"mxpi_imagedecoder0", b"mxpi_imageresize0", b"mxpi_imageresize1"]
    decoded, stretch, fit = [pb.MxpiVisionList.FromString(o.messageBuf).visionVec[0] for o in out]
    info = stretch.visionInfo
    assert (info.width, info.height, info.resizeType) == (40, 30, 0)
    assert [(h.dataSource, h.memberId) for h in stretch.headerVec] == [("mxpi_imagedecoder0", 0)]
    if processor == "ascend":
        assert (info.format, info.widthAligned, info.heightAligned) == (1, 48, 30)
        src = np.frombuffer(decoded.visionData.dataStr, np.uint8).reshape(93, 80)[:61, :77]
        got = np.frombuffer(stretch.visionData.dataStr, np.uint8).reshape(45, 48)[:30, :40]
    else:
        assert (info.format, info.widthAligned, info.heightAligned) == (13, 40, 30)
        src = np.frombuffer(decoded.visionData.dataStr, np.uint8).reshape(61, 77, 3)
        got = np.frombuffer(stretch.visionData.dataStr, np.uint8).reshape(30, 40, 3)
    np.testing.assert_array_equal(got, cv2.resize(src, (40, 30), interpolation=cv2.INTER_NEAREST))
    info = fit.visionInfo
    assert info.resizeType == 2 and abs(info.keepAspectRatioScaling - 64 / 77) < 1e-6
    pre = info.preprocessInfo[0]
    assert (pre.widthSrc, pre.heightSrc, pre.pasteLeft, pre.pasteTop, pre.pasteRight, pre.pasteBottom) == (77, 61, 0, 0, 64, 51)
    assert pre.elementName == "mxpi_imageresize1"


def test_resize_requires_sizes(api):
    middle = {"mxpi_imageresize0": ("mxpi_imageresize", {"resizeWidth": "16", "resizeHeight": "16"})}
    assert api.CreateMultipleStreams(pipeline("rs_bad", middle)) == 6015


def _objects_and_classes():
    objects = pb.MxpiObjectList()
    for i in range(2):
        obj = objects.objectVec.add()
        obj.x0, obj.y0, obj.x1, obj.y1 = i, 2.0, 10.5, 20.0
    classes = pb.MxpiClassList()
    for i, name in enumerate(("disc", "macula")):
        cls = classes.classVec.add()
        cls.classId, cls.className, cls.confidence = i, name, 0.5
        header = cls.headerVec.add()
        header.dataSource, header.memberId = "objs", i
    return objects, classes


def test_dataserialize_groups_by_type_and_nests_by_header(api):
    objects, classes = _objects_and_classes()
    vec = protobuf_in(objects, key=b"objs")
    vec.push_back(protobuf_in(classes, key=b"cls")[0])
    serial = {"single": "objs", "nested": "objs,cls", "empty": "nothing"}
    for name, keys_text in serial.items():
        middle = {"mxpi_dataserialize0": ("mxpi_dataserialize", {"outputDataKeys": keys_text})}
        assert api.CreateMultipleStreams(pipeline(name, middle)) == 0
        assert api.SendProtobuf(name.encode(), 0, vec) == 0
    single = api.GetResult(b"single", 0, 5000).data
    assert single == (b'{"MxpiObject":[{"classVec":[],"x0":0,"x1":10.5,"y0":2,"y1":20},'
                      b'{"classVec":[],"x0":1,"x1":10.5,"y0":2,"y1":20}]}')
    nested = json.loads(api.GetResult(b"nested", 0, 5000).data)
    assert [o["MxpiClass"] for o in nested["MxpiObject"]] == [
        [{"classId": 0, "className": "disc", "confidence": 0.5}],
        [{"classId": 1, "className": "macula", "confidence": 0.5}]]
    assert api.GetResult(b"empty", 0, 5000).data == b"{}"


def test_dataserialize_vision_bytes_are_base64_and_header_kept(api, image):
    middle = {"mxpi_imagedecoder0": ("mxpi_imagedecoder", {"cvProcessor": "opencv"}),
              "mxpi_dataserialize0": ("mxpi_dataserialize", {"outputDataKeys": "mxpi_imagedecoder0",
                                                             "eraseHeaderVecFlag": "0"})}
    assert api.CreateMultipleStreams(pipeline("vjson", middle)) == 0
    assert api.SendData(b"vjson", 0, data_input(_jpeg(image))) == 0
    doc = json.loads(api.GetResult(b"vjson", 0, 5000).data)
    (vision,) = doc["MxpiVision"]
    assert vision["headerVec"] == []
    pixels = np.frombuffer(base64.b64decode(vision["visionData"]["dataStr"]), np.uint8)
    assert pixels.size == 61 * 77 * 3 and vision["visionInfo"]["format"] == 13


def test_dumpdata_envelope(api):
    objects, _ = _objects_and_classes()
    middle = {"mxpi_dumpdata0": ("mxpi_dumpdata", {"requiredMetaDataKeys": "objs"})}
    assert api.CreateMultipleStreams(pipeline("dump", middle)) == 0
    assert api.SendProtobuf(b"dump", 0, protobuf_in(objects, key=b"objs")) == 0
    doc = json.loads(api.GetResult(b"dump", 0, 5000).data)
    (meta,) = doc["metaData"]
    assert meta["key"] == "objs" and meta["protoDataType"] == "MxpiObjectList"
    assert json.loads(meta["content"])["objectVec"][1]["x0"] == 1.0


def test_decode_resize_infer_chain_feeds_vision_bytes(api, image, tmp_path):
    """Reference §3.5: decoder -> resize -> tensorinfer; the MxpiVisionList bytes become the input tensor."""
    from mxlocal_support import uint8_model

    model = uint8_model(tmp_path / "nv12.onnx", shape=(1, 48, 32, 1))  # 32x32 NV12 = 32 * 48 bytes
    middle = {"mxpi_imagedecoder0": ("mxpi_imagedecoder", {"deviceId": "0"}),
              "mxpi_imageresize0": ("mxpi_imageresize", {"dataSource": "mxpi_imagedecoder0",
                                                          "resizeHeight": "32", "resizeWidth": "32"}),
              "mxpi_tensorinfer0": ("mxpi_tensorinfer", {"dataSource": "mxpi_imageresize0", "modelPath": str(model)})}
    assert api.CreateMultipleStreams(pipeline("chain", middle, deviceId="0")) == 0
    assert api.SendData(b"chain", 0, data_input(_jpeg(image))) == 0
    out = call_with_timeout(api.GetProtobuf, b"chain", 0, keys(b"mxpi_tensorinfer0", b"mxpi_imageresize0"))
    tensors = pb.MxpiTensorPackageList.FromString(out[0].messageBuf)
    resized = pb.MxpiVisionList.FromString(out[1].messageBuf).visionVec[0]
    got = np.frombuffer(tensors.tensorPackageVec[0].tensorVec[0].dataStr, np.int32)
    np.testing.assert_array_equal(got, np.frombuffer(resized.visionData.dataStr, np.uint8).astype(np.int32) + 1)
    assert [(h.dataSource, h.memberId) for h in tensors.tensorPackageVec[0].headerVec] == [("mxpi_imageresize0", 0)]
