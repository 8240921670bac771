"""``queue``: the GStreamer queue element MindX pipelines put between plugins.

Every local element already runs on its own thread behind an unbounded FIFO, so a queue is a
pass-through; its size/leak properties are accepted and ignored.
"""
from mxlocal.plugin_base import PluginBase


class Queue(PluginBase):
    factory = "queue"
    common_properties = False
    ignored_properties = frozenset({
        "max-size-buffers", "max-size-bytes", "max-size-time", "min-threshold-buffers",
        "min-threshold-bytes", "min-threshold-time", "leaky", "silent", "flush-on-eos", "name",
    })
    handles_errors = True  # pass failed buffers through untouched as well

    def process(self, buffers):
        return [buffers[0]]
