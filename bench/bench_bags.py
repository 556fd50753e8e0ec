"""Bag ingestion speed against a bare rosbags iteration over the same bag.

Writes a rosbag2 MCAP bag of N frames of 224x224 RGB-D with joint states, shield decisions and
feedback (BagRecorder), then times, best of --repeat runs:
  bare     rosbags AnyReader.messages + deserialize of every message (the floor: no alignment,
           no image conversion);
  dataset  read_episodes (decode, align, convert images to numpy, segment);
  replay   replay() as CDR bytes for a ROS publisher (no pacing).
Prints messages/s and MB/s of each and its ratio to bare.

    PYTHONPATH=src/safari_ros .venv/bin/python bench/bench_bags.py [--frames 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader

from safari_ros.bags import Episode, Step, read_episodes, replay, write_episodes
from safari_ros.bags.typestore import safari_typestore

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))


def make_episodes(frames: int, size: int, steps_per_episode: int = 60) -> list[Episode]:
    """Random RGB-D frames at 10 Hz, cut into episodes of 60 steps (the sim's length)."""
    rng = np.random.default_rng(0)
    episodes: list[Episode] = []
    for i in range(frames):
        e, k = divmod(i, steps_per_episode)
        if k == 0:
            episodes.append(Episode(e, []))
        t = 1_700_000_000_000_000_000 + i * 100_000_000
        episodes[-1].steps.append(Step(
            stamp_ns=t,
            rgb=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            depth=rng.uniform(0.3, 2.0, (size, size)).astype(np.float32),
            joint_names=JOINTS, joint_positions=rng.normal(size=7),
            joint_velocities=rng.normal(size=7), instruction="push the red cube",
            action=int(rng.integers(10)), reward=float(k), cost=0.0,
            cost_sources={"keep_out": False}, done=k == steps_per_episode - 1,
            episode_id=e, index=k,
        ))
    return episodes


def bare(bag: Path) -> int:
    """rosbags alone: iterate and deserialize every message."""
    with AnyReader([bag], default_typestore=safari_typestore()) as reader:
        n = 0
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
            n += 1
    return n


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        episodes = make_episodes(args.frames, args.size)
        start = time.perf_counter()
        bag = write_episodes(Path(tmp) / "bench_bag", episodes)
        write_s = time.perf_counter() - start
        mb = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
        count = bare(bag)
        print(f"bag: {args.frames} frames {args.size}x{args.size} RGB-D + joints, "
              f"{count} messages, {mb:.1f} MB (MCAP); written in {write_s:.2f} s "
              f"({count / write_s:.0f} msg/s, {mb / write_s:.0f} MB/s)")
        got = read_episodes(bag)
        assert sum(len(e) for e in got) == args.frames, "the dataset lost frames"

        runs = {
            "bare rosbags (messages + deserialize)": lambda: bare(bag),
            "read_episodes (align + numpy images)": lambda: read_episodes(bag),
            "replay (CDR bytes, unpaced)": lambda: sum(1 for _ in replay(bag)),
        }
        base = None
        print(f"{'':40s} {'msg/s':>9s} {'MB/s':>8s} {'frames/s':>9s} {'ratio':>6s}")
        for name, fn in runs.items():
            seconds = best_of(fn, args.repeat)
            base = base or seconds
            print(f"{name:40s} {count / seconds:9.0f} {mb / seconds:8.1f} "
                  f"{args.frames / seconds:9.0f} {base / seconds:6.2f}")


if __name__ == "__main__":
    main()
