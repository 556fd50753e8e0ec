"""The Gymnasium environment: registration, spaces, determinism, vector API, tasks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from safari_ros.config import load_config
from safari_ros.sim import ENV_ID, TabletopSim, TaskError, TaskSpec, parse_instruction


def _rollout(seed: int, actions: list[int]) -> list[dict[str, np.ndarray]]:
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        out.append(env.step(a)[0])
    env.close()
    return out


def test_same_seed_gives_identical_observations() -> None:
    actions = [5, 0, 2, 7]
    a, b = _rollout(7, actions), _rollout(7, actions)
    for oa, ob in zip(a, b, strict=True):
        for key in ("rgb", "depth", "proprio"):
            np.testing.assert_array_equal(oa[key], ob[key])
    c = _rollout(8, actions[:1])
    assert not np.array_equal(a[0]["rgb"], c[0]["rgb"])  # another seed, another scene


def test_observation_and_info_contract() -> None:
    env = gym.make(ENV_ID, template="lift")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs["rgb"].std() > 10 and (obs["depth"] > 0).mean() > 0.7  # sky above the table
    assert info["instruction"].startswith("lift the ")
    obs, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info) >= {"cost", "cost_sources", "success", "instruction"}
    assert info["cost"] in (0, 1) and isinstance(reward, float)
    env.close()


def test_env_checker_without_rendering() -> None:
    env = gym.make(ENV_ID, render_images=False)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_episode_truncates_after_episode_steps() -> None:
    env = gym.make(ENV_ID, render_images=False)
    env.reset(seed=0)
    stop = next(a.index for a in env.unwrapped.sim.actions if a.name == "stop")
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(stop)
        assert not terminated
        steps += 1
    assert steps == load_config()["sim"]["episode_steps"]


def test_sync_vector_env_with_two_envs() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(2)])
    obs, info = envs.reset(seed=[1, 2])
    cam = load_config()["sim"]["camera"]
    assert obs["rgb"].shape == (2, cam["height"], cam["width"], 3)
    assert obs["proprio"].shape == (2, 21)
    for _ in range(2):
        obs, reward, _, _, info = envs.step(np.array([5, 4]))
    assert reward.shape == (2,) and info["cost"].shape == (2,)
    assert len(set(info["instruction"])) >= 1
    envs.close()


def test_instructions_round_trip_and_heldout_split_is_novel() -> None:
    cfg = load_config()
    sim = TabletopSim(cfg, split="heldout")
    train = cfg["sim"]["tasks"]["train"]
    for seed in range(10):
        task = sim.reset(seed=seed)
        assert task.shape not in train["objects"] and task.colour not in train["colours"]
        assert parse_instruction(sim.instruction, cfg) == task
    task = sim.reset(seed=0, task="push the red cube onto the green square")
    assert task == TaskSpec("push", "cube", "red", "train", "green")
    assert sim.object_positions()["red cube"][2] == pytest.approx(0.02, abs=2e-3)
    with pytest.raises(TaskError):
        parse_instruction("juggle the red cube", cfg)
    sim.close()
