from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings


def test_defaults_are_embedded_under_frameq_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"FRAMEQ_HOME": str(tmp_path)})
    assert settings.embedded
    assert settings.database_url == f"sqlite:///{tmp_path / 'frameq.db'}"
    assert settings.store_url == f"file://{tmp_path / 'store'}"


def test_flags_override_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"FRAMEQ_HOME": str(tmp_path), "FRAMEQ_CRF": "30"}, crf=18, preset=None)
    assert settings.crf == 18 and settings.preset == "fast"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAMEQ_CRF": "high"}, "FRAMEQ_CRF must be an integer"),
        ({"FRAMEQ_CRF": "60"}, "crf"),
        ({"FRAMEQ_PRESET": "warp"}, "preset must be one of"),
        ({"FRAMEQ_SEGMENT_S": "0"}, "segment length"),
        ({"FRAMEQ_DEVICE": "tpu"}, "device must be"),
        ({"FRAMEQ_MATTE_MODEL": "lite"}, "FRAMEQ_MATTE_MODEL must be one of heavy, full"),
        ({"FRAMEQ_DATABASE_URL": "mysql://x"}, "FRAMEQ_DATABASE_URL"),
        ({"FRAMEQ_STORE_URL": "ftp://x"}, "FRAMEQ_STORE_URL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"FRAMEQ_HOME": str(tmp_path), **env})
