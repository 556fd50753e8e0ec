"""ROS-free evaluation harness of SAFARI (issue #7): SCAPO against its baselines and ablations on
the MuJoCo tabletop, over several seeds, with tables and learning curves.

- ``settings``: config/evaluation.yaml resolved into one config per (method or ablation, seed).
- ``loop``: the online SCAPO loop (policy -> shield -> env -> replay -> update), reusable.
- ``models``: full fine-tuning and the no-VLM CNN with SafariModel's interface; zero-shot CLIP.
- ``runner`` / ``report`` / ``stats`` / ``compute``: one run, the report, statistics, compute.
- ``cli``: the ``safari_evaluate`` command.
"""

from safari_ros.evaluation.loop import EpisodeRecord, OnlineLoop, ShieldGate, make_envs
from safari_ros.evaluation.settings import RunConfig, build_plan, config_diff
from safari_ros.evaluation.stats import mean_ci, t_quantile

__all__ = [
    "EpisodeRecord",
    "OnlineLoop",
    "RunConfig",
    "ShieldGate",
    "build_plan",
    "config_diff",
    "make_envs",
    "mean_ci",
    "t_quantile",
]
