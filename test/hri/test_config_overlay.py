"""`extends:` overlays in config.load_config: deep merge onto the base, per-file relative paths,
and config/hri.yaml adding only its `hri` section to config/tabletop.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from safari_ros.config import ConfigError, deep_merge, load_config

BASE = {
    "actions": {"step_m": 0.04, "set": [{"name": "stop"}, {"name": "home"}]},
    "safety": {"tau_safe": 0.5, "watchdog_s": 0.5, "zones": [1, 2]},
    "learning": {"backbone": {"weights": "../models/w.safetensors", "image_size": 112}},
}


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_overlay_merges_deeply_and_replaces_lists(tmp_path):
    _write(tmp_path / "base" / "tabletop.yaml", BASE)
    overlay = _write(tmp_path / "domain" / "hri.yaml", {
        "extends": "../base/tabletop.yaml",
        "safety": {"tau_safe": 0.3, "zones": [3], "watchdog_s": None},
        "learning": {"backbone": {"image_size": 224}},
        "hri": {"x": 1},
    })
    cfg = load_config(overlay)
    assert cfg["safety"] == {"tau_safe": 0.3, "zones": [3]}  # merged, list replaced, null deleted
    assert cfg["actions"] == BASE["actions"] and cfg["hri"] == {"x": 1}
    assert cfg["learning"]["backbone"]["image_size"] == 224
    # A relative file key names a file beside the layer that states it (the base), not the overlay
    assert cfg["learning"]["backbone"]["weights"] == str(tmp_path / "models" / "w.safetensors")
    assert cfg["_path"] == str(overlay)
    assert cfg["_extends"] == [str(tmp_path / "base" / "tabletop.yaml")]
    assert "extends" not in cfg


def test_overlay_chains_cycles_and_missing_bases(tmp_path):
    _write(tmp_path / "a.yaml", {"extends": "b.yaml", "hri": {"a": 1}})
    _write(tmp_path / "b.yaml", {"extends": "c.yaml", "hri": {"b": 2}})
    _write(tmp_path / "c.yaml", BASE)
    cfg = load_config(tmp_path / "a.yaml")
    assert cfg["hri"] == {"a": 1, "b": 2} and len(cfg["_extends"]) == 2
    _write(tmp_path / "c.yaml", {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "d.yaml", {"extends": "missing.yaml"})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "d.yaml")
    _write(tmp_path / "e.yaml", {"extends": ["c.yaml"]})
    with pytest.raises(ConfigError, match="one YAML file"):
        load_config(tmp_path / "e.yaml")


def test_deep_merge_leaves_its_inputs_alone():
    base = {"a": {"b": [1]}}
    out = deep_merge(base, {"a": {"c": 2}})
    out["a"]["b"].append(2)
    assert base == {"a": {"b": [1]}} and out == {"a": {"b": [1, 2], "c": 2}}


def test_hri_config_is_the_tabletop_plus_its_section(cfg):
    tabletop = load_config(cfg["_extends"][0])
    added = {k: v for k, v in cfg.items() if k not in tabletop}
    assert set(added) == {"hri", "_extends"}
    assert {k: v for k, v in cfg.items() if k in tabletop and k != "_path"} == {
        k: v for k, v in tabletop.items() if k != "_path"}

