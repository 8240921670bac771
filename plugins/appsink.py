"""``appsink``: where results leave a stream for ``GetResult``/``GetProtobuf`` (reference §3.2).

Names must be ``appsink<digits>``; ``outPluginId`` k is the k-th appsink by numeric suffix.
Each appsink feeds one unbounded FIFO (or the unique-id map); the stream installs
:attr:`AppSink.deliver`. GStreamer properties are accepted and ignored.
"""
from mxlocal.plugin_base import PluginBase


class AppSink(PluginBase):
    factory = "appsink"
    common_properties = False
    ignored_properties = frozenset({
        "blocksize", "emit-signals", "caps", "sync", "async", "max-buffers", "drop", "wait-on-eos",
        "enable-last-sample", "max-lateness", "qos", "ts-offset", "buffer-list", "max-bitrate",
        "processing-deadline", "render-delay", "throttle-time", "max-time", "max-bytes", "name",
    })
    has_src_pad = False
    handles_errors = True  # a failed buffer is a result too (errorCode + error text)

    def deliver(self, buffer):  # replaced by the stream
        raise RuntimeError("appsink used outside a stream")

    def process(self, buffers):
        self.deliver(buffers[0])
        return []
