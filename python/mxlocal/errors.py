"""MindX SDK return codes and the exception the local runtime raises internally.

The values are those of the SDK's ``MxBase/ErrorCode/ErrorCodes.h`` (reference §1.3 item 9,
plus the few extra codes the SDK returns from the same paths). Python callers only ever see
the integers: the public API turns every :class:`MxError` into its code, as the SDK does.
"""
from __future__ import annotations

APP_PYTHON_INIT_ERROR = -1  # any Python API call before InitManager

APP_ERR_OK = 0

APP_ERR_COMM_FAILURE = 1001
APP_ERR_COMM_INNER = 1002
APP_ERR_COMM_INVALID_POINTER = 1003
APP_ERR_COMM_INVALID_PARAM = 1004
APP_ERR_COMM_TIMEOUT = 1011
APP_ERR_COMM_INIT_FAIL = 1013
APP_ERR_COMM_NO_EXIST = 1016
APP_ERR_COMM_INVALID_PATH = 1029

APP_ERR_DVPP_RESIZE_FAIL = 2002
APP_ERR_DVPP_JPEG_DECODE_FAIL = 2006
APP_ERR_DVPP_PNG_DECODE_FAIL = 2008
APP_ERR_DVPP_INVALID_FORMAT = 2019

APP_ERR_QUEUE_FULL = 5003

APP_ERR_STREAM_EXIST = 6001
APP_ERR_STREAM_NOT_EXIST = 6002
APP_ERR_STREAM_CHANGE_STATE_FAILED = 6003
APP_ERR_STREAM_CREATE_FAILED = 6004
APP_ERR_STREAM_INVALID_CONFIG = 6005
APP_ERR_STREAM_INVALID_LINK = 6006
APP_ERR_STREAM_LINK_FAILED = 6007
APP_ERR_STREAM_TRANS_MODE_NOT_MATCHED = 6008
APP_ERR_STREAM_TRANS_MODE_INVALID = 6009
APP_ERR_STREAM_TIMEOUT = 6010
APP_ERR_STREAM_ELEMENT_INVALID = 6011
APP_ERR_STREAM_ELEMENT_EXIST = 6012
APP_ERR_STREAM_ELEMENT_NOT_EXIST = 6013
APP_ERR_ELEMENT_INVALID_FACTORY = 6014
APP_ERR_ELEMENT_INVALID_PROPERTIES = 6015
APP_ERR_ELEMENT_PAD_UNLINKED = 6016
APP_ERR_PIPELINE_PROPERTY_CONFIG_ERROR = 6017

APP_ERR_PLUGIN_TOOLKIT_METADATA_KEY_ALREADY_EXIST = 7010
APP_ERR_PLUGIN_TOOLKIT_METADATA_KEY_NOEXIST = 7011
APP_ERR_PLUGIN_TOOLKIT_METADATA_IS_NULL = 7013

_DESCRIPTIONS = {
    APP_PYTHON_INIT_ERROR: "Python API called before InitManager",
    APP_ERR_OK: "Success",
    APP_ERR_COMM_FAILURE: "General Failed",
    APP_ERR_COMM_INNER: "Internal error",
    APP_ERR_COMM_INVALID_POINTER: "Invalid Pointer",
    APP_ERR_COMM_INVALID_PARAM: "Invalid parameter",
    APP_ERR_COMM_TIMEOUT: "Timed out",
    APP_ERR_COMM_INIT_FAIL: "initialize failed",
    APP_ERR_COMM_NO_EXIST: "Object, file or other resource doesn't exist",
    APP_ERR_COMM_INVALID_PATH: "Invalid path",
    APP_ERR_DVPP_RESIZE_FAIL: "DVPP: resize fail",
    APP_ERR_DVPP_JPEG_DECODE_FAIL: "DVPP: decode jpeg or jpg fail",
    APP_ERR_DVPP_PNG_DECODE_FAIL: "DVPP: decode png fail",
    APP_ERR_DVPP_INVALID_FORMAT: "DVPP: mismatch the image format",
    APP_ERR_QUEUE_FULL: "Queue: full queue",
    APP_ERR_STREAM_EXIST: "Stream already exists",
    APP_ERR_STREAM_NOT_EXIST: "Stream does not exist",
    APP_ERR_STREAM_CHANGE_STATE_FAILED: "Failed to change the stream state",
    APP_ERR_STREAM_CREATE_FAILED: "Failed to create the stream",
    APP_ERR_STREAM_INVALID_CONFIG: "Invalid stream config",
    APP_ERR_STREAM_INVALID_LINK: "Invalid link",
    APP_ERR_STREAM_LINK_FAILED: "Failed to link elements",
    APP_ERR_STREAM_TRANS_MODE_NOT_MATCHED: "Transmission mode does not match",
    APP_ERR_STREAM_TRANS_MODE_INVALID: "Invalid transmission mode",
    APP_ERR_STREAM_TIMEOUT: "Stream timeout",
    APP_ERR_STREAM_ELEMENT_INVALID: "Invalid element",
    APP_ERR_STREAM_ELEMENT_EXIST: "Element already exists",
    APP_ERR_STREAM_ELEMENT_NOT_EXIST: "Element does not exist",
    APP_ERR_ELEMENT_INVALID_FACTORY: "Invalid element factory",
    APP_ERR_ELEMENT_INVALID_PROPERTIES: "Invalid element properties",
    APP_ERR_ELEMENT_PAD_UNLINKED: "Element pad is not linked",
    APP_ERR_PIPELINE_PROPERTY_CONFIG_ERROR: "Pipeline property config error",
    APP_ERR_PLUGIN_TOOLKIT_METADATA_KEY_ALREADY_EXIST: "Metadata key already exists",
    APP_ERR_PLUGIN_TOOLKIT_METADATA_KEY_NOEXIST: "Metadata key does not exist",
    APP_ERR_PLUGIN_TOOLKIT_METADATA_IS_NULL: "Metadata is null",
}


def describe(code: int) -> str:
    """Short English description of ``code`` ("Unknown error" when not listed)."""
    return _DESCRIPTIONS.get(code, "Unknown error")


def error_info(code: int) -> str:
    """The SDK's ``GetErrorInfo(code)`` text, e.g. ``"[1002][Internal error] "``."""
    return f"[{code}][{describe(code)}] "


class MxError(Exception):
    """An SDK-coded failure inside the runtime.

    Parameters
    ----------
    code : int
        SDK return code (one of the constants above).
    message : str
        One line for the user naming what failed, e.g.
        ``"stream 'superretina' element 'mxpi_tensorinfer0': modelPath 'x.onnx' not found"``.
    """

    def __init__(self, code: int, message: str):
        self.code = int(code)
        self.message = " ".join(str(message).split())  # one line, whatever the cause text held
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"
