"""``appsrc``: where ``SendData``/``SendProtobuf`` buffers enter a stream (reference §3.2).

Names must be ``appsrc<digits>``; ``inPluginId`` k is the k-th appsrc in lexicographic order.
The GStreamer properties (``blocksize``, ``max-bytes``, ...) are accepted and ignored: the
local runtime's queues are unbounded.
"""
from mxlocal.plugin_base import PluginBase


class AppSrc(PluginBase):
    factory = "appsrc"
    common_properties = False
    ignored_properties = frozenset({
        "blocksize", "max-bytes", "max-buffers", "max-time", "block", "is-live", "emit-signals",
        "caps", "format", "do-timestamp", "stream-type", "min-latency", "max-latency", "size",
        "min-percent", "handle-segment-change", "leaky-type", "num-buffers", "typefind", "name",
    })
    sink_pads = 0

    def process(self, buffers):
        return [buffers[0]]
