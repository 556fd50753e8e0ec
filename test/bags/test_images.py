"""image_to_numpy on every supported encoding, row padding, byte order and bad images."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from safari_ros.bags import MalformedImage, UnsupportedEncoding, image_to_numpy
from safari_ros.bags.messages import make_image

RGB = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def image(pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False):
    """A duck-typed Image (as rclpy's or rosbags' would be) with `pad` garbage bytes per row."""
    raw = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    h, w = raw.shape[:2]
    rows = raw.reshape(h, -1).view(np.uint8)
    rows = np.hstack([rows, np.full((h, pad), 0xAB, dtype=np.uint8)])
    return SimpleNamespace(height=h, width=w, encoding=encoding, step=rows.shape[1],
                           is_bigendian=int(bigendian), data=rows.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(("encoding", "pixels"), [
    ("rgb8", RGB),
    ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])),
    ("bgra8", np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_give_rgb(encoding, pixels, pad):
    out = image_to_numpy(image(pixels, encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == RGB.shape
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_grey_rgb():
    grey = RGB[..., 0]
    out = image_to_numpy(image(grey, "mono8", pad=1))
    assert out.shape == RGB.shape
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_depth_16uc1_millimetres_to_metres(bigendian, pad):
    mm = np.arange(35, dtype=np.uint16).reshape(5, 7) * 300  # > 255: byte order matters
    out = image_to_numpy(image(mm, "16UC1", pad=pad, bigendian=bigendian))
    assert out.dtype == np.float32
    assert np.isnan(out[0, 0])  # 0 mm = no return
    np.testing.assert_allclose(out.reshape(-1)[1:], mm.reshape(-1)[1:] / 1000.0, rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_32fc1_metres(bigendian):
    metres = np.linspace(0.2, 3.0, 35, dtype=np.float32).reshape(5, 7)
    out = image_to_numpy(image(metres, "32FC1", pad=4, bigendian=bigendian))
    np.testing.assert_array_equal(out, metres)


def test_result_does_not_alias_the_message_buffer():
    msg = image(RGB, "rgb8")
    out = image_to_numpy(msg)
    out[:] = 0
    np.testing.assert_array_equal(image_to_numpy(msg), RGB)


def test_rosbags_message_from_the_builders_round_trips():
    np.testing.assert_array_equal(image_to_numpy(make_image(RGB, 5)), RGB)
    depth = np.array([[0.5, np.nan], [1.25, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(image_to_numpy(make_image(depth, 5, encoding="16UC1")), depth)


def test_unsupported_encoding_is_named():
    with pytest.raises(UnsupportedEncoding, match="yuv422"):
        image_to_numpy(image(RGB[..., :2].copy(), "yuv422"))


@pytest.mark.parametrize("change", [
    {"height": 6},                  # more rows than data
    {"step": 7 * 3 - 1},            # step shorter than a row
    {"width": 8},                   # row wider than step
])
def test_size_mismatch_is_malformed(change):
    msg = image(RGB, "rgb8")
    for k, v in change.items():
        setattr(msg, k, v)
    with pytest.raises(MalformedImage, match="data bytes"):
        image_to_numpy(msg)


def test_truncated_data_is_malformed():
    msg = image(RGB, "rgb8")
    msg.data = msg.data[:-1]
    with pytest.raises(MalformedImage):
        image_to_numpy(msg)


def test_rclpy_image_converts_the_same():
    pytest.importorskip("rclpy", reason="needs the ROS 2 wheels")
    from sensor_msgs.msg import Image

    msg = Image(height=5, width=7, encoding="bgr8", step=7 * 3 + 2, is_bigendian=0)
    msg.data = image(RGB[..., ::-1], "bgr8", pad=2).data
    np.testing.assert_array_equal(image_to_numpy(msg), RGB)
