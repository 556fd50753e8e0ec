"""The tracked-person messages (safari_msgs/TrackedPersons, TrackedPerson)."""

from __future__ import annotations

from safari_ros.bags.typestore import safari_typestore


def test_tracked_person_messages_are_defined():
    # The source-tree definitions parse and nest (what bags and the colcon build read).
    store = safari_typestore()
    fields = dict(store.fielddefs["safari_msgs/msg/TrackedPersons"][1])
    assert set(fields) == {"header", "persons"}
    person = [name for name, _ in store.fielddefs["safari_msgs/msg/TrackedPerson"][1]]
    assert person == ["id", "tracked", "keypoint_names", "positions", "velocities", "confidence"]
