"""rosbag2 / ROS 1 bag input and output without a ROS installation (the `rosbags` library).

- `read_episodes(paths, topic_map)`: bags -> `Episode`s of time-aligned `Step`s (pre-training).
- `read_motion_logs(paths, topic_map)`: logs without SAFARI's topics -> frames, joint
  trajectories and controller commands, for motion labelling (safari_ros.pretrain.labelling).
- `BagRecorder`, `write_episodes`: write rosbag2 MCAP/sqlite3 under the live topic names.
- `replay(path, rate=...)`: a bag's messages as (topic, msgtype, CDR bytes, time), paced.
- `image_to_numpy(msg)`: sensor_msgs/Image (rosbags or rclpy) -> numpy.
Bad input raises a `BagError` naming bag, topic and time; `skip_bad=True` counts it instead.
"""

from .dataset import (
    STREAM_TYPES,
    Episode,
    JointCommand,
    JointSeries,
    MotionLog,
    Step,
    StepDataset,
    read_episodes,
    read_motion_logs,
)
from .errors import (
    BagError,
    CorruptBag,
    ImageError,
    LostMessages,
    MalformedImage,
    MissingMetadata,
    MissingTopic,
    ReadReport,
    TruncatedBag,
    UnknownMessageType,
    UnsupportedEncoding,
    describe_skipped,
)
from .images import ENCODINGS, image_to_numpy, numpy_to_image
from .reader import BagMessage, BagReader
from .recorder import BagRecorder, SplitBagRecorder, recover_split_bags, write_episodes
from .replay import ReplayItem, paced, replay
from .topics import LabelSettings, TopicMap, default_topic_map_path

__all__ = [
    "ENCODINGS",
    "STREAM_TYPES",
    "BagError",
    "BagMessage",
    "BagReader",
    "BagRecorder",
    "CorruptBag",
    "Episode",
    "ImageError",
    "JointCommand",
    "JointSeries",
    "LabelSettings",
    "LostMessages",
    "MalformedImage",
    "MissingMetadata",
    "MissingTopic",
    "MotionLog",
    "ReadReport",
    "ReplayItem",
    "SplitBagRecorder",
    "Step",
    "StepDataset",
    "TopicMap",
    "TruncatedBag",
    "UnknownMessageType",
    "UnsupportedEncoding",
    "default_topic_map_path",
    "describe_skipped",
    "image_to_numpy",
    "numpy_to_image",
    "paced",
    "read_episodes",
    "read_motion_logs",
    "recover_split_bags",
    "replay",
    "write_episodes",
]
