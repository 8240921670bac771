"""The SDK binding's data classes and ``std::vector`` wrappers (reference §1.1-§1.2).

They behave like the SWIG proxies of the real ``StreamManagerApi`` module: every
``std::string`` field takes and returns ``bytes`` only (a ``str`` raises ``TypeError``), int
fields take ``int`` only, and the vector types check their element type and offer
``push_back``/``append``/``size()``/indexing/``pop``/iteration. Where the API expects a vector,
a plain ``list`` of the right element type is accepted too.
"""
from __future__ import annotations

import copy

BYTES_HINT = "; every string of this API is bytes, e.g. b'appsrc0'"


class _Field:
    """Typed read/write attribute of a data class (SWIG member variable)."""

    def __init__(self, kind, default=None, cpp=None):
        self.kind = kind        # "bytes" | "int" | "float" | a vector/struct class
        self.default = default
        self.cpp = cpp
        self.name = ""
        self.owner = ""

    def __set_name__(self, owner, name):
        self.name = name
        self.owner = owner.__name__
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        try:
            return getattr(obj, self.slot)
        except AttributeError:
            value = self._fresh_default()
            setattr(obj, self.slot, value)
            return value

    def _fresh_default(self):
        if isinstance(self.kind, type):
            return self.kind()
        return self.default

    def __set__(self, obj, value):
        setattr(obj, self.slot, self.convert(value))

    def convert(self, value):
        kind = self.kind
        if kind == "bytes":
            ok = isinstance(value, bytes)
        elif kind == "int":
            ok = isinstance(value, int)
        elif kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:  # a vector or struct class
            if isinstance(value, kind):
                return value
            if issubclass(kind, _Vector) and isinstance(value, (list, tuple)):
                return kind(value)
            ok = False
        if not ok:
            cpp = self.cpp or {"bytes": "std::string", "int": "int", "float": "float"}.get(kind, getattr(kind, "__name__", kind))
            hint = BYTES_HINT if kind == "bytes" else ""
            raise TypeError(f"in method '{self.owner}_{self.name}_set', argument 2 of type '{cpp}'"
                            f" (got {type(value).__name__}{hint})")
        return value


class _Struct:
    """Base of the data classes: default constructor, readable repr, no stray attributes."""

    _fields: tuple = ()

    def __setattr__(self, name, value):
        if not name.startswith("_") and not isinstance(getattr(type(self), name, None), _Field):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)

    def __repr__(self):
        parts = []
        for name in self._fields:
            value = getattr(self, name)
            if isinstance(value, bytes) and len(value) > 48:
                value = value[:48] + b"..."
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class _Vector:
    """A SWIG ``std::vector`` proxy holding elements of :attr:`item_type`."""

    item_type: type = object
    cpp_name = "std::vector"

    def __init__(self, *args):
        self._items = []
        if len(args) == 1 and isinstance(args[0], int):
            self._items = [self.item_type() for _ in range(args[0])]
        elif len(args) == 2 and isinstance(args[0], int):
            self._items = [self._check(args[1]) for _ in range(args[0])]
        elif len(args) == 1:
            self._items = [self._check(v) for v in args[0]]
        elif args:
            raise TypeError(f"Wrong number or type of arguments for overloaded function 'new_{type(self).__name__}'")

    def _check(self, item):
        if not isinstance(item, self.item_type):
            hint = BYTES_HINT if self.item_type is bytes else ""
            raise TypeError(f"in method '{type(self).__name__}_push_back', argument 2 of type "
                            f"'{self.cpp_name}::value_type const &' (got {type(item).__name__}{hint})")
        return item

    # std::vector API
    def push_back(self, item):
        self._items.append(self._check(item))

    append = push_back

    def size(self):
        return len(self._items)

    def empty(self):
        return not self._items

    def clear(self):
        self._items.clear()

    def pop(self):
        if not self._items:
            raise IndexError("pop from empty container")
        return self._items.pop()

    def pop_back(self):
        self.pop()

    def front(self):
        return self._items[0]

    def back(self):
        return self._items[-1]

    def insert(self, index, item):
        self._items.insert(index, self._check(item))

    def reserve(self, n):
        pass

    def capacity(self):
        return len(self._items)

    def resize(self, n, value=None):
        del self._items[n:]
        while len(self._items) < n:
            self._items.append(self.item_type() if value is None else copy.copy(self._check(value)))

    # Python protocol
    def __len__(self):
        return len(self._items)

    def __bool__(self):
        return bool(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(self._items[index])
        return self._items[index]

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            self._items[index] = [self._check(v) for v in value]
        else:
            self._items[index] = self._check(value)

    def __delitem__(self, index):
        del self._items[index]

    def __repr__(self):
        return f"{type(self).__name__}({self._items!r})"

    def __eq__(self, other):
        if isinstance(other, _Vector):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None


def as_items(value, vector_type: type, method: str, argno: int) -> list:
    """Elements of a vector argument: a ``vector_type`` or a list/tuple of its element type."""
    if isinstance(value, vector_type):
        return list(value)
    if isinstance(value, (list, tuple)):
        try:
            return list(vector_type(value))
        except TypeError:
            pass
    raise TypeError(f"in method '{method}', argument {argno} of type "
                    f"'{vector_type.cpp_name} const &' (got {type(value).__name__})")


# ---- data classes (StreamManagerApi.h) -----------------------------------------------------------
class RoiBox(_Struct):
    """Crop box ``x0, y0, x1, y1`` (float)."""
    _fields = ("x0", "y0", "x1", "y1")
    x0 = _Field("float", 0.0)
    y0 = _Field("float", 0.0)
    x1 = _Field("float", 0.0)
    y1 = _Field("float", 0.0)


class RoiBoxVector(_Vector):
    item_type = RoiBox
    cpp_name = "std::vector< RoiBox >"


class StringVector(_Vector):
    item_type = bytes
    cpp_name = "std::vector< std::string >"


class MxDataInput(_Struct):
    """Input of ``SendData``/``SendDataWithUniqueId``: ``data`` is usually a whole JPEG file."""
    _fields = ("data", "fragmentId", "customParam", "roiBoxs")
    data = _Field("bytes", b"")
    fragmentId = _Field("int", 0)
    customParam = _Field("bytes", b"")
    roiBoxs = _Field(RoiBoxVector)


class MxDataInputExt(_Struct):
    _fields = ("data", "fragmentId", "customParam", "mxpiFrameInfo", "mxpiVisionInfo", "roiBoxs")
    data = _Field("bytes", b"")
    fragmentId = _Field("int", 0)
    customParam = _Field("bytes", b"")
    mxpiFrameInfo = _Field("bytes", b"")
    mxpiVisionInfo = _Field("bytes", b"")
    roiBoxs = _Field(RoiBoxVector)


class MxBufferInput(_Struct):
    """Buffer of the 4-argument ``SendData``; the infos are serialized protobuf messages."""
    _fields = ("data", "mxpiFrameInfo", "mxpiVisionInfo")
    data = _Field("bytes", b"")
    mxpiFrameInfo = _Field("bytes", b"")
    mxpiVisionInfo = _Field("bytes", b"")


class MxDataOutput(_Struct):
    """Result of ``GetResult(name, outPluginId)``: on error ``data`` holds the error text."""
    _fields = ("errorCode", "data")
    errorCode = _Field("int", 0)
    data = _Field("bytes", b"")


class _WithErrorInfo(_Struct):
    def __init__(self, *args):
        if args:
            if len(args) > 2:
                raise TypeError(f"Wrong number or type of arguments for overloaded function 'new_{type(self).__name__}'")
            self.errorCode = args[0]
            if len(args) == 2:
                self.errorMsg = args[1]

    def SetErrorInfo(self, errorCodeIn, errorMsgIn):
        self.errorCode = errorCodeIn
        self.errorMsg = errorMsgIn


class MxBufferOutput(_WithErrorInfo):
    _fields = ("errorCode", "errorMsg", "data")
    errorCode = _Field("int", 0)
    errorMsg = _Field("bytes", b"")
    data = _Field("bytes", b"")


class MxProtobufIn(_Struct):
    """One message for ``SendProtobuf``: ``type`` is the full name, e.g. ``b'MxTools.MxpiVisionList'``."""
    _fields = ("key", "type", "protobuf")
    key = _Field("bytes", b"")
    type = _Field("bytes", b"")
    protobuf = _Field("bytes", b"")


class MxProtobufOut(_Struct):
    """One message from ``GetProtobuf``: ``messageName`` is the key, ``messageBuf`` the bytes."""
    _fields = ("errorCode", "messageName", "messageBuf")
    errorCode = _Field("int", 0)
    messageName = _Field("bytes", b"")
    messageBuf = _Field("bytes", b"")


class MxMetadataInput(_Struct):
    """Metadata of the 4-argument ``SendData``, attached under key ``dataSource``."""
    _fields = ("dataSource", "dataType", "serializedMetadata")
    dataSource = _Field("bytes", b"")
    dataType = _Field("bytes", b"")
    serializedMetadata = _Field("bytes", b"")


class MxMetadataOutput(_WithErrorInfo):
    """Metadata from the 4-argument ``GetResult``; ``dataType`` is the short type name."""
    _fields = ("errorCode", "errorMsg", "dataType", "serializedMetadata")
    errorCode = _Field("int", 0)
    errorMsg = _Field("bytes", b"")
    dataType = _Field("bytes", b"")
    serializedMetadata = _Field("bytes", b"")


class InProtobufVector(_Vector):
    item_type = MxProtobufIn
    cpp_name = "std::vector< MxProtobufIn >"


class OutProtobufVector(_Vector):
    item_type = MxProtobufOut
    cpp_name = "std::vector< MxProtobufOut >"


class MetadataInputVector(_Vector):
    item_type = MxMetadataInput
    cpp_name = "std::vector< MxMetadataInput >"


class MetadataOutputVector(_Vector):
    item_type = MxMetadataOutput
    cpp_name = "std::vector< MxMetadataOutput >"


class MxBufferAndMetadataOutput(_WithErrorInfo):
    """Result of the 4-argument ``GetResult``."""
    _fields = ("errorCode", "errorMsg", "bufferOutput", "metadataVec")
    errorCode = _Field("int", 0)
    errorMsg = _Field("bytes", b"")
    bufferOutput = _Field(MxBufferOutput)
    metadataVec = _Field(MetadataOutputVector)
