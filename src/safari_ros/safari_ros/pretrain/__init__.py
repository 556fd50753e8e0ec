"""Pre-training of SAFARI's adapters and heads on demonstration bags (ROS-free).

- `generate_demos` (demos.py): scripted-oracle episodes in the MuJoCo tabletop, with random
  perturbations that cause violations, written as a rosbag2 MCAP bag under the live topic names.
- `load_bag_features` (features.py): bags -> frozen-prefix features, cached on disk (float16);
  `load_demonstrations` wraps them in a `DemonstrationSampler` of whole transitions, which the
  learner draws part of each SCAPO batch from online (learning.scapo.demo_share).
- `MotionLabeller` (labelling.py): logs of a robot that did not run SAFARI (camera, joint states,
  controller commands) -> steps labelled with the primitive that explains their motion, costed
  with the shield's hard-limit checks; episodes and success from an optional annotation file.
- `run_pretrain` (train.py): L_pretrain on those features, single process or torchrun/DDP;
  checkpoint + JSON report, resumable, deterministic under a seed.
- `safari_pretrain` (cli.py): the command line (`demos`, `train`, `backbone`; `--preset`).
"""

from safari_ros.pretrain.demos import DemoSummary, generate_demos
from safari_ros.pretrain.features import (
    CacheStats,
    DemonstrationSampler,
    FeatureSet,
    load_bag_features,
    load_demonstrations,
)
from safari_ros.pretrain.labelling import MotionLabeller
from safari_ros.pretrain.metrics import auroc, expected_calibration_error
from safari_ros.pretrain.train import PretrainResult, TrainSettings, run_pretrain, split_episodes

__all__ = [
    "CacheStats",
    "DemoSummary",
    "DemonstrationSampler",
    "FeatureSet",
    "MotionLabeller",
    "PretrainResult",
    "TrainSettings",
    "auroc",
    "expected_calibration_error",
    "generate_demos",
    "load_bag_features",
    "load_demonstrations",
    "run_pretrain",
    "split_episodes",
]
