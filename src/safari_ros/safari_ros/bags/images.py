"""sensor_msgs/Image <-> numpy, for bags (rosbags messages) and live topics (rclpy messages) alike.

`image_to_numpy` is duck-typed: it needs only the attributes height, width, encoding, step,
is_bigendian and data, which rosbags and rclpy messages both have. Colour comes out as RGB uint8
(H, W, 3), depth as float32 metres (H, W) with NaN where the sensor had no return.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .errors import MalformedImage, UnsupportedEncoding

__all__ = ["COLOUR_ENCODINGS", "DEPTH_ENCODINGS", "ENCODINGS", "image_to_numpy", "numpy_to_image"]


class _Layout(NamedTuple):
    dtype: str  # numpy scalar type of one channel
    channels: int


ENCODINGS: dict[str, _Layout] = {
    "rgb8": _Layout("u1", 3),
    "bgr8": _Layout("u1", 3),
    "rgba8": _Layout("u1", 4),
    "bgra8": _Layout("u1", 4),
    "mono8": _Layout("u1", 1),
    "32FC1": _Layout("f4", 1),
    "16UC1": _Layout("u2", 1),
}
DEPTH_ENCODINGS = ("32FC1", "16UC1")
COLOUR_ENCODINGS = tuple(e for e in ENCODINGS if e not in DEPTH_ENCODINGS)
_MM_PER_M = 1000.0


def image_to_numpy(msg: Any) -> np.ndarray:
    """Convert a sensor_msgs/Image (rosbags or rclpy) to a new numpy array.

    rgb8/bgr8/rgba8/bgra8/mono8 -> (H, W, 3) uint8 RGB; 32FC1 (metres) and 16UC1 (millimetres) ->
    (H, W) float32 metres, NaN where the sensor had no return (16UC1 zero, REP-118).
    Row padding (`step` > width * pixel size) and big-endian data are honoured.

    Raises:
        UnsupportedEncoding: any other encoding.
        MalformedImage: data size, step or shape inconsistent with each other.
    """
    encoding = str(msg.encoding)
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise UnsupportedEncoding(
            f"image encoding {encoding!r} is not supported (supported: {', '.join(ENCODINGS)})"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(layout.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * layout.channels * dtype.itemsize
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if height <= 0 or width <= 0 or step < row_bytes or data.size != step * height:
        raise MalformedImage(
            f"{encoding} image {width}x{height} with step {step} needs step >= {row_bytes} and "
            f"{step}x{height} = {step * height} data bytes, got {data.size}"
        )
    # A strided view skips the row padding without copying; the conversions below copy once.
    pixels = np.ndarray(
        (height, width, layout.channels),
        dtype=dtype,
        buffer=data,
        strides=(step, layout.channels * dtype.itemsize, dtype.itemsize),
    )
    if encoding in DEPTH_ENCODINGS:
        depth = pixels[..., 0].astype(np.float32)  # native byte order, new memory
        if encoding == "16UC1":
            depth[depth == 0] = np.nan
            depth /= _MM_PER_M
        return depth
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    # np.array copies: the result must not alias the message's buffer.
    return np.array(pixels[..., 2::-1] if encoding.startswith("bgr") else pixels[..., :3])


def numpy_to_image(array: np.ndarray, encoding: str | None = None) -> dict[str, Any]:
    """The Image fields (height, width, encoding, is_bigendian, step, data) for an array.

    Colour input is RGB (H, W, 3) uint8, written as rgb8 (or bgr8/mono8 when asked); depth input
    is float metres (H, W), written as 32FC1 (or 16UC1 millimetres, NaN -> 0). The default
    encoding follows the array: uint8 (H, W, 3) -> rgb8, uint8 (H, W) -> mono8, float -> 32FC1,
    uint16 -> 16UC1 (already millimetres).
    """
    array = np.asarray(array)
    if encoding is None:
        encoding = _default_encoding(array)
    if encoding == "32FC1":
        pixels = array.astype("<f4")
    elif encoding == "16UC1":
        if array.dtype == np.uint16:
            pixels = array.astype("<u2")
        else:
            mm = np.nan_to_num(np.asarray(array, np.float64) * _MM_PER_M, nan=0.0)
            pixels = np.clip(np.rint(mm), 0, np.iinfo(np.uint16).max).astype("<u2")
    elif encoding in ("rgb8", "bgr8", "mono8") and array.dtype == np.uint8:
        if encoding == "mono8":
            pixels = array if array.ndim == 2 else array[..., 0]
        else:
            pixels = array[..., ::-1] if encoding == "bgr8" else array
    else:
        raise UnsupportedEncoding(f"cannot write a {array.dtype} {array.shape} array as {encoding}")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": pixels.nbytes // height,
        "data": pixels.reshape(-1).view(np.uint8),
    }


def _default_encoding(array: np.ndarray) -> str:
    if array.dtype == np.uint8:
        if array.ndim == 3 and array.shape[2] == 3:
            return "rgb8"
        if array.ndim == 2:
            return "mono8"
    if array.ndim == 2 and array.dtype.kind == "f":
        return "32FC1"
    if array.ndim == 2 and array.dtype == np.uint16:
        return "16UC1"
    raise UnsupportedEncoding(f"no image encoding for a {array.dtype} array of shape {array.shape}")
