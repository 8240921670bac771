"""Metadata -> JSON as ``mxpi_dataserialize`` writes it (SDK ``MxpiMetadataGraph``).

Each list member (e.g. an ``MxpiObject`` of an ``MxpiObjectList``) is a node named by its
message type. Members are printed with protobuf's JSON printer, ``always_print_primitive_fields``
on, ``headerVec`` erased when asked, and grouped by type name into arrays:
``{"MxpiObject": [{...}, ...]}``. With several keys (or none) a member whose
``headerVec`` points at a member of another printed list (``dataSource`` + ``memberId``) is
nested inside it, e.g. the classes of a cropped object inside that ``MxpiObject``. Keys are
sorted and the output is compact, as nlohmann::json dumps it. Nothing to print gives ``{}``.
"""
from __future__ import annotations

import json
import logging

from google.protobuf import json_format

from mxlocal.buffer import Buffer
from mxlocal.protobuf_bridge import with_data

log = logging.getLogger("mxlocal")

FRAME_INFO = "MxpiFrameInfo"


class _Node:
    __slots__ = ("name", "message", "type_name", "children", "valid", "read")

    def __init__(self, name, message, type_name):
        self.name = name
        self.message = message
        self.type_name = type_name
        self.children = []
        self.valid = True
        self.read = False


class _Graph:
    def __init__(self, buffer: Buffer):
        self.buffer = buffer
        self.nodes: dict[str, _Node] = {}
        self.lists: dict[str, list[str]] = {}
        self.roots: list[_Node] = []
        for key, msg in buffer.metadata.items():
            self._add_list(key, msg)

    def _add_list(self, key, msg):
        desc = msg.DESCRIPTOR
        if desc.name == FRAME_INFO:
            node = _Node(key, msg, desc.name)
            self.nodes[key] = node
            self.roots.append(node)
            self.lists[key] = [key]
            return
        first = desc.fields[0] if desc.fields else None
        if first is None or first.label != first.LABEL_REPEATED or first.message_type is None:
            return  # not a list of members (the SDK refuses to add it)
        names = []
        for i, member in enumerate(getattr(msg, first.name)):
            mfields = member.DESCRIPTOR.fields
            if not mfields or mfields[0].name != "headerVec":
                log.debug("metadata %r: members have no headerVec; not serialized", key)
                return
            name = f"{key}_{i}"
            node = _Node(name, member, member.DESCRIPTOR.name)
            self.nodes[name] = node
            names.append(name)
            if not member.headerVec:
                self.roots.append(node)
            for header in member.headerVec:
                source = header.dataSource or header.parentName
                parent = self.nodes.get(f"{source}_{header.memberId}")
                if parent is not None:
                    parent.children.append(node)
                elif source not in self.lists:
                    self.roots.append(node)
        self.lists[key] = names

    def node_json(self, node: _Node, erase_header: bool) -> dict:
        msg = node.message
        if node.type_name == "MxpiVision":  # the SDK base64-prints image bytes, not tensor bytes
            wrapper = type(msg)()
            wrapper.CopyFrom(msg)
            if wrapper.visionData.dataSize > 0:
                holder = _vision_list_of(wrapper)
                wrapper = with_data(holder, self.buffer).visionVec[0]
            msg = wrapper
        value = json_format.MessageToDict(msg, including_default_value_fields=True,
                                          preserving_proto_field_name=True)
        if erase_header:
            value.pop("headerVec", None)
        return _cpp_numbers(value)


def _vision_list_of(vision):
    from mxlocal import MxpiDataType_pb2 as pb

    holder = pb.MxpiVisionList()
    holder.visionVec.add().CopyFrom(vision)
    return holder


def _cpp_numbers(value):
    """Integral floats as ints: C++ prints float 1.0 as ``1`` where Python prints ``1.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _cpp_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cpp_numbers(v) for v in value]
    return value


def _grouped(nodes, render) -> dict:
    out: dict = {}
    for node in sorted(nodes, key=lambda n: n.type_name):  # stable, as the SDK's type sort
        out.setdefault(node.type_name, []).append(render(node))
    return out


def serialize(buffer: Buffer, keys: list[str], erase_header: bool = True) -> str:
    """JSON text for ``outputDataKeys`` = ``keys`` (empty list: every metadata key)."""
    graph = _Graph(buffer)
    if len(keys) == 1:
        names = graph.lists.get(keys[0])
        if names is None:
            log.warning("mxpi_dataserialize: metadata key %r not on the buffer", keys[0])
            return "{}"
        out = _grouped([graph.nodes[n] for n in names], lambda n: graph.node_json(n, erase_header))
    else:
        if keys:
            for node in graph.nodes.values():
                node.valid = False
            for key in keys:
                for name in graph.lists.get(key, []):
                    graph.nodes[name].valid = True
        top: list[_Node] = []
        _squeeze(top, sorted(graph.roots, key=lambda n: n.type_name))

        def render(node):
            value = graph.node_json(node, erase_header)
            value.update(_grouped(node.children, render))
            return value

        out = _grouped(top, render)
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False) if out else "{}"


def _squeeze(parent_children: list, nodes: list) -> None:
    """Drop invalid (unrequested) nodes, lifting their children to the nearest valid ancestor."""
    if not nodes or nodes[0].read:
        return
    for node in nodes:
        node.read = True
        children = sorted(node.children, key=lambda n: n.type_name)
        node.children = []
        if node.valid:
            parent_children.append(node)
            _squeeze(node.children, children)
        else:
            _squeeze(parent_children, children)
