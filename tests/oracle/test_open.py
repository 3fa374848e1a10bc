"""`open_oracle`: one opener for every command, the same errors everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from activethief import models
from activethief.errors import ConfigError
from activethief.oracle import ModelOracle, open_oracle


def test_a_model_file_opens_as_a_model_oracle_the_user_owns(tmp_path: Path) -> None:
    models.save(models.build("mlp", 10, seed=0), tmp_path / "t.pt", arch="mlp", num_classes=10)
    oracle = open_oracle(str(tmp_path / "t.pt"), output_mode="label", budget=7)
    assert isinstance(oracle, ModelOracle) and oracle.free_evaluation
    assert (oracle.budget, str(oracle.mode)) == (7, "label")


def test_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="only for HTTP targets"):
        open_oracle(str(tmp_path / "t.pt"), api_key_env="KEY")
    monkeypatch.delenv("ACTIVETHIEF_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="ACTIVETHIEF_TEST_UNSET: that environment variable is not set"):
        open_oracle("http://127.0.0.1:9/v2/models/m", api_key_env="ACTIVETHIEF_TEST_UNSET")


def test_http_settings_reach_the_http_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx", reason="HTTP targets need the serve extra")
    from activethief.oracle import http

    seen: dict[str, object] = {}

    def fake(url: str, **kwargs: object) -> str:
        seen.update(url=url, **kwargs)
        return "oracle"

    monkeypatch.setattr(http, "HttpOracle", fake)
    monkeypatch.setenv("ACTIVETHIEF_TEST_KEY", "secret")
    url = "http://127.0.0.1:9/v2/models/m"
    assert open_oracle(url, budget=5, api_key_env="ACTIVETHIEF_TEST_KEY", retry_for=3.5) == "oracle"  # type: ignore[comparison-overlap]
    assert seen == {"url": url, "api_key": "secret", "budget": 5, "ledger": None, "retry_for": 3.5}
    seen.clear()
    open_oracle(url)
    assert "retry_for" not in seen  # HttpOracle's own default window
