"""Every safari_msgs type is written to a rosbag2 MCAP file and read back with rosbags, whose
definitions come from the package's own .msg/.srv/.action files. rclpy must decode what rosbags
encodes and the other way round: one definition, two implementations. (Bytes are not compared:
Fast CDR leaves alignment padding uninitialised.)"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="needs the ROS 2 wheels (scripts/setup.sh)")
pytest.importorskip("safari_msgs", reason="needs the colcon-built safari_msgs")

from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from support import filled, interface_names, ros_class

from safari_ros.bags.typestore import PARTS, bag_type_name, safari_typestore


def all_types() -> list[str]:
    names = interface_names()
    return [f"safari_msgs/{kind}/{n}{suffix}"
            for kind, suffixes in PARTS.items() for n in names[kind] for suffix in suffixes]


def test_typestore_registers_every_interface_from_the_source_files():
    store = safari_typestore()
    missing = [t for t in all_types() if bag_type_name(t) not in store.types]
    assert not missing


def test_every_type_round_trips_through_an_mcap_bag(tmp_path):
    store = safari_typestore()
    types = all_types()
    originals = {t: filled(t, seed=3) for t in types}
    bag = tmp_path / "interfaces_bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for i, t in enumerate(types):
            conn = writer.add_connection(f"/rt/{i}", bag_type_name(t), typestore=store)
            writer.write(conn, 1_000 + i, serialize_message(originals[t]))
    assert any(p.suffix == ".mcap" for p in bag.iterdir())

    seen = set()
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            t = types[int(conn.topic.rsplit("/", 1)[1])]
            seen.add(t)
            decoded = store.deserialize_cdr(raw, conn.msgtype)
            assert deserialize_message(bytes(raw), ros_class(t)) == originals[t], t
            reencoded = bytes(store.serialize_cdr(decoded, conn.msgtype))
            assert deserialize_message(reencoded, ros_class(t)) == originals[t], t
    assert seen == set(types)
