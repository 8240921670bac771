"""``mxpi_dataserialize``: metadata -> JSON text in the buffer data (reference §3.3).

The output buffer holds the JSON of the ``outputDataKeys`` metadata (comma-separated element
names; empty: all metadata) in the SDK's layout: members grouped by message type name,
``always_print_primitive_fields`` semantics, ``headerVec`` erased when ``eraseHeaderVecFlag``
is 1 (default), nested by ``headerVec`` when several keys are given, ``{}`` when there is
nothing to print. The metadata is copied onto the output buffer, so ``GetProtobuf`` still
finds the keys after this element. A buffer that carries error info becomes a buffer holding
the error text, with the error code, as in the SDK.
"""
from mxlocal.buffer import Buffer
from mxlocal.metadata_json import serialize
from mxlocal.plugin_base import PluginBase, Prop


class DataSerialize(PluginBase):
    factory = "mxpi_dataserialize"
    properties = {
        "outputDataKeys": Prop("string", ""),
        "eraseHeaderVecFlag": Prop("uint", 1, maximum=1),
    }
    sink_pads = 1
    handles_errors = True

    def init(self) -> None:
        self.keys = [k.strip() for k in self.props["outputDataKeys"].split(",") if k.strip()]

    def process(self, buffers):
        buffer = buffers[0]
        if buffer.has_errors():
            last = buffer.errors[sorted(buffer.errors)[-1]]
            text = last.message + "\n"
            result = Buffer(data=text.encode(), extra=dict(buffer.extra))
            result.add_error(self.name, last.code, text)
            return [result]
        text = serialize(buffer, self.keys, bool(self.props["eraseHeaderVecFlag"]))
        return [Buffer(data=text.encode(), metadata=dict(buffer.metadata), memory=dict(buffer.memory),
                       extra=dict(buffer.extra))]
