"""SplitBagRecorder: a recording killed with -9 keeps every bag it had closed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from safari_ros.bags import BagReader, SplitBagRecorder

TOPIC, TYPE = "/safari/instruction", "std_msgs/msg/String"


def read_all(folder) -> list[str]:
    """The messages of every bag in the folder, in name order (skip_bad: as the learner reads)."""
    from safari_ros.bags.typestore import safari_typestore

    store, out = safari_typestore(), []
    for bag in sorted(p for p in folder.iterdir() if p.is_dir()):
        with BagReader(bag, skip_bad=True) as reader:
            out += [store.deserialize_cdr(reader.to_cdr(m), TYPE).data
                    for m in reader.messages([TOPIC])]
    return out


def test_bags_are_split_by_time_and_read_back_in_order(tmp_path):
    from safari_ros.bags.typestore import safari_typestore

    store, now = safari_typestore(), [0.0]
    rec = SplitBagRecorder(tmp_path, split_s=1.0, clock=lambda: now[0])
    for i in range(10):
        msg = store.types[TYPE](data=f"m{i}")
        rec.write_cdr(TOPIC, TYPE, store.serialize_cdr(msg, TYPE), 1_000 + i)
        now[0] += 0.35  # a new bag after every third message
    rec.close()
    rec.close()  # idempotent
    assert rec.bags == 4 and rec.count == 10
    assert read_all(tmp_path) == [f"m{i}" for i in range(10)]
    with pytest.raises(ValueError):
        SplitBagRecorder(tmp_path, split_s=-1.0)


def test_a_recorder_killed_mid_recording_loses_only_its_open_bag(tmp_path):
    # The child writes 10 messages a split apart, 3 more into the open bag, then dies without
    # closing anything (os._exit: no finaliser, like kill -9).
    child = textwrap.dedent(f"""
        import os
        from safari_ros.bags import SplitBagRecorder
        from safari_ros.bags.typestore import safari_typestore
        store, now = safari_typestore(), [0.0]
        rec = SplitBagRecorder({str(tmp_path)!r}, split_s=1.0, clock=lambda: now[0])
        for i in range(13):
            msg = store.types[{TYPE!r}](data=f"m{{i}}")
            rec.write_cdr({TOPIC!r}, {TYPE!r}, store.serialize_cdr(msg, {TYPE!r}), 1000 + i)
            now[0] += 1.0 if i < 10 else 0.0
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
    got = read_all(tmp_path)
    # Messages 0..9 each closed their bag at the next write; 10..12 were in the open one.
    assert got[:10] == [f"m{i}" for i in range(10)]
    assert set(got) <= {f"m{i}" for i in range(13)}
