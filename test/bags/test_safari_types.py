"""The stack's own types as sources: ActionProposal for the action, Transition for feedback."""

from __future__ import annotations

import numpy as np

from safari_ros.bags import BagRecorder, read_episodes
from safari_ros.bags.messages import build, make_header, make_image, make_time

from .synth import MS, T0, frame_rgb, standard_map


def test_action_proposal_and_transition_pair_by_observation_stamp(tmp_path):
    with BagRecorder(tmp_path / "bag") as rec:
        for i in range(4):
            t = T0 + i * 100 * MS
            rec.write("/cam/rgb", make_image(frame_rgb(i), t), t)
            # Published later than the frame, yet keyed on it through observation_stamp.
            rec.write("/safari/action_proposal", build(
                "safari_msgs/msg/ActionProposal", header=make_header(t + 40 * MS),
                observation_stamp=make_time(t), action_index=i + 1), t + 40 * MS)
            observation = build("safari_msgs/msg/Observation", header=make_header(t))
            rec.write("/safari/transition", build(
                "safari_msgs/msg/Transition", header=make_header(t + 90 * MS), episode_id=7,
                step=i, observation=observation, proposed_action_index=i + 1,
                executed_action_index=9, reward=0.5 * i, cost=1.0, cost_sources=["keep_out"],
                cost_active=np.array([True]), done=i == 3, success=i == 3), t + 90 * MS)
    tmap = standard_map().with_topics(
        depth=None, joint_states=None, instruction=None, reward=None, cost=None, episode=None,
        action="/safari/action_proposal", feedback="/safari/transition")
    (episode,) = read_episodes(tmp_path / "bag", tmap)
    assert episode.episode_id == 7 and episode.success
    assert [s.action for s in episode.steps] == [1, 2, 3, 4]
    assert [s.reward for s in episode.steps] == [0.0, 0.5, 1.0, 1.5]
    assert [s.index for s in episode.steps] == [0, 1, 2, 3]
    assert episode.steps[0].cost_sources == {"keep_out": True}
    assert episode.episode_cost == 4.0


def test_transition_serves_as_action_too(tmp_path):
    with BagRecorder(tmp_path / "bag") as rec:
        for i in range(2):
            t = T0 + i * 100 * MS
            rec.write("/cam/rgb", make_image(frame_rgb(i), t), t)
            observation = build("safari_msgs/msg/Observation", header=make_header(t))
            rec.write("/safari/transition", build(
                "safari_msgs/msg/Transition", header=make_header(t + 90 * MS), step=i,
                observation=observation, proposed_action_index=3, executed_action_index=8,
                intervened=True), t + 90 * MS)
    tmap = standard_map().with_topics(
        depth=None, joint_states=None, instruction=None, reward=None, cost=None, episode=None,
        action="/safari/transition", feedback="/safari/transition")
    steps = read_episodes(tmp_path / "bag", tmap)[0].steps
    assert [(s.proposed_action, s.action) for s in steps] == [(3, 8), (3, 8)]
