"""Model endpoints per tier, from a file and the environment."""

from __future__ import annotations

import pytest

from fleetmind.agents import ModelConfig
from fleetmind.errors import ConfigError, ModelNotConfigured

FILE = """
models:
  device:
    base_url: http://127.0.0.1:8080/v1/
    model: small
  cloud:
    base_url: https://api.example.com/v1/chat/completions
    model: big
    api_key_env: EXAMPLE_KEY
    prices: {input_per_mtok: 0.5, output_per_mtok: 2}
planner: cloud
"""


def test_file_gives_one_endpoint_per_tier(tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(FILE)
    config = ModelConfig.load(path, env={})
    assert config.tiers == ["device", "cloud"]
    assert config.endpoint("device").base_url == "http://127.0.0.1:8080/v1"
    assert config.endpoint("cloud").base_url == "https://api.example.com/v1"
    assert config.endpoint("cloud").name == "cloud"
    assert config.endpoint("cloud").prices.cost(1_000_000, 1_000_000) == 2.5
    assert config.planner_tier() == "cloud"
    with pytest.raises(ConfigError, match="EXAMPLE_KEY is not set"):
        config.endpoint("cloud").resolve_api_key()
    assert config.endpoint("cloud").key_source() == "env EXAMPLE_KEY"


def test_environment_overrides_field_by_field(tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(FILE)
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    env = {
        "FLEETMIND_CLOUD_MODEL": "bigger",
        "FLEETMIND_CLOUD_API_KEY_FILE": str(key),
        "FLEETMIND_CLOUD_PRICE_OUTPUT": "4",
        "FLEETMIND_EDGE_BASE_URL": "http://edge:8000/v1",
        "FLEETMIND_EDGE_MODEL": "mid",
    }
    config = ModelConfig.load(path, env=env)
    cloud = config.endpoint("cloud")
    assert (cloud.model, cloud.base_url) == ("bigger", "https://api.example.com/v1")
    assert cloud.resolve_api_key() == "sk-from-file"  # the file replaced api_key_env
    assert (cloud.prices.input_per_mtok, cloud.prices.output_per_mtok) == (0.5, 4.0)
    assert config.tiers == ["device", "edge", "cloud"]


def test_environment_alone_is_enough() -> None:
    env = {"FLEETMIND_DEVICE_BASE_URL": "http://127.0.0.1:1/v1", "FLEETMIND_DEVICE_MODEL": "m"}
    config = ModelConfig.load(None, env=env)
    assert config.planner_tier() == "device"  # the largest configured
    assert config.source == "environment"


def test_nothing_configured_says_how_to_configure() -> None:
    config = ModelConfig.load(None, env={})
    with pytest.raises(ModelNotConfigured, match="FLEETMIND_CLOUD_BASE_URL"):
        config.planner_tier()
    with pytest.raises(ModelNotConfigured, match="no cloud model is configured"):
        config.endpoint("cloud")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  cloud: {model: m}\n", "models.cloud.base_url: Field required"),
        ("models:\n  cloud: {base_url: ftp://x, model: m}\n", "must start with http"),
        ("models:\n  gpu: {base_url: http://x, model: m}\n", "models.gpu"),
        ("models: [\n", "malformed YAML"),
        ("- a\n", "is a mapping"),
        ("models:\n  cloud: {base_url: http://x, model: m, timeout_s: -1}\n", "timeout_s"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        ModelConfig.load(path, env={})
    assert "\n" not in caught.value.message


def test_a_named_file_must_exist(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read model configuration"):
        ModelConfig.load(None, env={"FLEETMIND_MODELS": str(tmp_path / "missing.yaml")})


def test_an_inline_key_never_shows(tmp_path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  cloud: {base_url: http://x, model: m, api_key: sk-inline-9}\n")
    config = ModelConfig.load(path, env={})
    assert "sk-inline-9" not in repr(config) + str(config) + config.model_dump_json()
    assert config.endpoint("cloud").resolve_api_key() == "sk-inline-9"
