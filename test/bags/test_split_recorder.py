"""SplitBagRecorder: a recording killed with -9 loses nothing it wrote (recover_split_bags)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from safari_ros.bags import BagReader, SplitBagRecorder, recover_split_bags

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


def _killed_recording(folder, messages: int = 13, closed: int = 10) -> None:
    """A child writes `closed` messages a split apart, the rest into the open bag, then dies
    without closing anything (os._exit: no finaliser, like kill -9)."""
    child = textwrap.dedent(f"""
        import os
        from safari_ros.bags import SplitBagRecorder
        from safari_ros.bags.typestore import safari_typestore
        store, now = safari_typestore(), [0.0]
        rec = SplitBagRecorder({str(folder)!r}, split_s=1.0, clock=lambda: now[0])
        for i in range({messages}):
            msg = store.types[{TYPE!r}](data=f"m{{i}}")
            rec.write_cdr({TOPIC!r}, {TYPE!r}, store.serialize_cdr(msg, {TYPE!r}), 1000 + i)
            now[0] += 1.0 if i < {closed} else 0.0
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", child], check=True, timeout=120)


def test_a_recorder_killed_mid_recording_loses_nothing_it_wrote(tmp_path):
    _killed_recording(tmp_path)
    # Messages 0..9 each closed their bag at the next write; 10..12 were in the open one, which
    # is unreadable (its chunk was in memory) until its journal finishes it.
    assert read_all(tmp_path)[:10] == [f"m{i}" for i in range(10)]
    assert len(list(tmp_path.glob("*.journal.mcap"))) == 1  # only the open bag's
    assert recover_split_bags(tmp_path) == 3
    assert read_all(tmp_path) == [f"m{i}" for i in range(13)]
    assert not list(tmp_path.glob("*.journal.mcap"))
    assert recover_split_bags(tmp_path) == 0  # idempotent


@pytest.mark.parametrize("cut", [1, 20, 45, 200])
def test_a_journal_cut_short_gives_back_every_whole_message(tmp_path, cut):
    """The kill can land mid-write: the record being written is lost, the ones before it
    are not, and nothing raises."""
    _killed_recording(tmp_path, messages=5, closed=0)  # all five in one open bag
    journal = next(tmp_path.glob("*.journal.mcap"))
    data = journal.read_bytes()
    size = data.rfind(b"m4") - data.rfind(b"m3")  # one message record; the five end the file
    journal.write_bytes(data[:-cut])
    whole = 5 - math.ceil(cut / size)
    assert recover_split_bags(tmp_path) == max(0, whole)
    assert read_all(tmp_path) == [f"m{i}" for i in range(max(0, whole))]


def test_a_journal_left_beside_a_closed_bag_is_dropped_and_the_bag_kept(tmp_path):
    from safari_ros.bags.typestore import safari_typestore

    store = safari_typestore()
    rec = SplitBagRecorder(tmp_path, split_s=0.0)
    rec.write_cdr(TOPIC, TYPE, store.serialize_cdr(store.types[TYPE](data="kept"), TYPE), 1)
    bag = rec._bag.path  # killed between closing the bag and deleting its journal:
    journal = bag.with_name(bag.name + ".journal.mcap")
    rec._bag.close()
    assert journal.exists() and (bag / "metadata.yaml").exists()
    assert recover_split_bags(tmp_path) == 0
    assert not journal.exists() and read_all(tmp_path) == ["kept"]


def test_on_a_full_disk_every_write_that_returned_is_recovered(tmp_path):
    """A file size limit (ulimit -f) stands in for a full disk: writes fail with OSError, the
    recorder starts a new bag after each failure, and every message whose write returned is in
    the bags once they are recovered (what raised was not written, and says so)."""
    child = textwrap.dedent(f"""
        import os, resource
        from safari_ros.bags import SplitBagRecorder
        from safari_ros.bags.typestore import safari_typestore
        store = safari_typestore()
        rec = SplitBagRecorder({str(tmp_path)!r}, split_s=0.0)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        ok, failed = [], 0
        for i in range(120):
            msg = store.types[{TYPE!r}](data=f"m{{i}}-" + "x" * 40)
            try:
                rec.write_cdr({TOPIC!r}, {TYPE!r}, store.serialize_cdr(msg, {TYPE!r}), 1000 + i)
                ok.append(i)
            except OSError:
                failed += 1
        print(",".join(map(str, ok)), failed)
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", child], check=True, timeout=120,
                         capture_output=True, text=True).stdout.split()
    written, failed = [int(i) for i in out[0].split(",")], int(out[1])
    assert failed > 0 and len(written) > 40  # the limit was hit, and writing went on after it
    recover_split_bags(tmp_path)
    got = {m.split("-")[0] for m in read_all(tmp_path)}
    assert {f"m{i}" for i in written} <= got
