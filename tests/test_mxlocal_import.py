"""The module imports both as ``mxlocal.StreamManagerApi`` and, SDK style, as ``StreamManagerApi``."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SDK_STYLE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {mxlocal!r})          # what the SDK's set_env.sh does with ${{MX_SDK_HOME}}/python
    import MxpiDataType_pb2 as MxpiDataType
    from StreamManagerApi import StreamManagerApi, InProtobufVector, MxProtobufIn, StringVector, MxDataInput
    api = StreamManagerApi()
    assert api.InitManager() == 0
    p = {{"t": {{"appsrc0": {{"factory": "appsrc", "next": "appsink0"}}, "appsink0": {{"factory": "appsink"}}}}}}
    assert api.CreateMultipleStreams(json.dumps(p).encode()) == 0
    vl = MxpiDataType.MxpiVisionList(); vl.visionVec.add().visionData.dataStr = b"xyz"
    pb = MxProtobufIn(); pb.key = b"appsrc0"; pb.type = b"MxTools.MxpiVisionList"; pb.protobuf = vl.SerializeToString()
    vec = InProtobufVector(); vec.push_back(pb)
    assert api.SendProtobuf(b"t", 0, vec) == 0
    keys = StringVector(); keys.push_back(b"appsrc0")
    out = api.GetProtobuf(b"t", 0, keys)
    back = MxpiDataType.MxpiVisionList(); back.ParseFromString(out[0].messageBuf)
    assert back.visionVec[0].visionData.dataStr == b"xyz"
    d = MxDataInput(); d.data = b"raw"
    assert api.SendData(b"t", b"appsrc0", d) == 0 and api.GetResult(b"t", 0).data == b"raw"
    api.DestroyAllStreams()
    print("ok")
""")

PACKAGE_STYLE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {python!r})
    from mxlocal import StreamManagerApi as sm
    from mxlocal import MxpiDataType_pb2
    api = sm.StreamManagerApi()
    assert api.InitManager() == 0 and api.DestroyAllStreams() == 0
    print("ok")
""")


def _run(code: str) -> None:
    # a clean interpreter: no pytest pythonpath, CWD outside the project
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_sdk_style_import():
    _run(SDK_STYLE.format(mxlocal=str(ROOT / "python" / "mxlocal")))


def test_package_style_import():
    _run(PACKAGE_STYLE.format(python=str(ROOT / "python")))
