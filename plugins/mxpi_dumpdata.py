"""``mxpi_dumpdata``: metadata as an ``MxpiDumpData`` JSON envelope (reference §3.3).

Output buffer data (and the file ``location`` when set):
``{"buffer": {"bufferData": "<base64>"}, "metaData": [{"key": ..., "content": "<JSON of the
message>", "protoDataType": "MxpiTensorPackageList"}, ...]}``. ``requiredMetaDataKeys``
(comma-separated; empty: all keys) selects the metadata, ``filterMetaDataKeys`` removes keys,
``dumpMemoryData`` (default true) fills tensor/image ``dataStr`` (base64 in the JSON) and the
buffer bytes. The metadata stays on the buffer. Best effort: the SDK's exact file naming for
``location`` is not reproduced (the file is overwritten with the latest buffer).
"""

import json

from google.protobuf import json_format

from mxlocal.MxpiDumpData_pb2 import MxpiDumpData
from mxlocal.buffer import Buffer
from mxlocal.plugin_base import PluginBase, Prop
from mxlocal.protobuf_bridge import with_data


class DumpData(PluginBase):
    factory = "mxpi_dumpdata"
    properties = {
        "requiredMetaDataKeys": Prop("string", ""),
        "filterMetaDataKeys": Prop("string", ""),
        "location": Prop("string", ""),
        "dumpMemoryData": Prop("bool", True),
    }
    sink_pads = 1

    def init(self) -> None:
        split = lambda text: [k.strip() for k in text.split(",") if k.strip()]  # noqa: E731
        self.required = split(self.props["requiredMetaDataKeys"])
        self.filtered = set(split(self.props["filterMetaDataKeys"]))

    def process(self, buffers):
        buffer = buffers[0]
        dump = MxpiDumpData()
        with_memory = self.props["dumpMemoryData"]
        if with_memory:
            dump.buffer.bufferData = bytes(buffer.data)
        keys = self.required or list(buffer.metadata)
        for key in keys:
            msg = buffer.metadata.get(key)
            if msg is None or key in self.filtered:
                continue
            item = dump.metaData.add()
            item.key = key
            item.protoDataType = msg.DESCRIPTOR.name
            shown = with_data(msg, buffer) if with_memory else msg
            item.content = _compact(json_format.MessageToDict(shown, including_default_value_fields=True,
                                                              preserving_proto_field_name=True))
        text = _compact(json_format.MessageToDict(dump, preserving_proto_field_name=True))
        if self.props["location"]:
            with open(self.props["location"], "w", encoding="utf-8") as f:
                f.write(text)
            return [buffer]
        return [Buffer(data=text.encode(), metadata=dict(buffer.metadata), memory=dict(buffer.memory),
                       extra=dict(buffer.extra))]


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
