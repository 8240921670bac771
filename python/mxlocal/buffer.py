"""The buffer that travels through a stream: payload bytes, metadata, host memory, errors.

A real MindX buffer is a GstBuffer carrying a metadata map ``key -> protobuf message``. Tensor
and image messages do not hold their bytes: ``MxpiTensor.tensorDataPtr`` /
``MxpiVisionData.dataPtr`` point at host or device memory and ``dataStr`` stays empty until
the Python binding copies the memory out on ``GetProtobuf``/``GetResult``. The local runtime
keeps that contract: the pointer is a process-unique fake address and :attr:`Buffer.memory`
maps it to the numpy array that holds the bytes, so big tensors move through the stream
without being copied into protobuf fields.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_ALIGN = 64
_ptr_lock = threading.Lock()
_next_ptr = 0x10_0000_0000  # looks like an address; never 0 (0 means "no memory")


def allocate_address(nbytes: int) -> int:
    """Reserve a unique fake address range of ``nbytes`` bytes (bump allocator, never reused)."""
    global _next_ptr
    with _ptr_lock:
        ptr = _next_ptr
        _next_ptr += (max(int(nbytes), 1) + 2 * _ALIGN - 1) // _ALIGN * _ALIGN
    return ptr


@dataclass
class ErrorInfo:
    """Error attached by one element (the SDK's ``MxpiErrorInfo``)."""

    code: int
    message: str


@dataclass
class Buffer:
    """One buffer in flight.

    Attributes
    ----------
    data : bytes | memoryview
        Payload bytes (e.g. a JPEG from ``SendData``, JSON from ``mxpi_dataserialize``);
        empty for ``SendProtobuf``.
    metadata : dict[str, google.protobuf.message.Message]
        Metadata by key, in insertion order (element name or user key such as ``appsrc0``).
        Messages are treated as immutable once attached; an element that changes one attaches
        a new message.
    memory : dict[int, numpy.ndarray]
        Host memory referenced by the pointer fields of the metadata messages: address ->
        C-contiguous array whose bytes are the data.
    errors : dict[str, ErrorInfo]
        Error info by element name. A buffer with errors still flows to the appsink.
    extra : dict[str, Any]
        Non-protobuf side data: ``unique_id`` (SendDataWithUniqueId), ``frame_info`` /
        ``vision_info`` (4-argument SendData), ``roi_boxes``, ``fragment_id``, ``custom_param``.
    """

    data: Any = b""
    metadata: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def attach_array(self, array: np.ndarray) -> tuple[int, int]:
        """Keep ``array`` alive on this buffer and return ``(address, nbytes)`` for a message.

        Parameters
        ----------
        array : numpy.ndarray
            Any dtype/shape; made C-contiguous if it is not (the only copy).
        """
        array = np.ascontiguousarray(array)
        ptr = allocate_address(array.nbytes)
        self.memory[ptr] = array
        return ptr, int(array.nbytes)

    def read_memory(self, ptr: int, size: int) -> np.ndarray:
        """Bytes at ``ptr`` as a flat uint8 view of length ``size`` (no copy).

        Raises
        ------
        KeyError
            When ``ptr`` is not memory of this buffer or holds fewer than ``size`` bytes.
        """
        if size <= 0:
            return np.empty(0, np.uint8)
        array = self.memory.get(int(ptr))
        if array is None or array.nbytes < size:
            raise KeyError(f"no host memory of {size} bytes at address {int(ptr):#x}")
        return array.reshape(-1).view(np.uint8)[:size]

    def add_error(self, element: str, code: int, message: str) -> None:
        """Attach error info from ``element`` (the SDK's ``AddErrorInfo``)."""
        self.errors[element] = ErrorInfo(int(code), str(message))

    def has_errors(self) -> bool:
        return bool(self.errors)

    def branch(self) -> "Buffer":
        """Shallow copy for a fan-out branch: own dicts, shared (immutable) messages/arrays."""
        return Buffer(self.data, dict(self.metadata), dict(self.memory),
                      dict(self.errors), dict(self.extra))

    def error_output(self) -> tuple[int, bytes]:
        """``(errorCode, text)`` the appsink reports for a failed buffer.

        As the SDK's ``SetErrorInfoToDataOutput``: every error text followed by a newline, in
        element-name order; the code is the last one's.
        """
        code = 0
        text = []
        for name in sorted(self.errors):
            info = self.errors[name]
            text.append(info.message + "\n")
            code = info.code
        return code, "".join(text).encode()
