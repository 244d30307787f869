"""``serve`` settings: a bad value fails at load, named, in the words of the config."""

from __future__ import annotations

from typing import Any

import pytest

from distcron.errors import ConfigError
from distcron.replica.config import build_config


@pytest.mark.parametrize(("settings", "message"), [
    ({"lease_ttl": "soon"}, "setting 'lease_ttl': must be a number"),
    ({"lease_ttl": 0.1}, "setting 'lease_ttl': must be more than 0.5"),
    ({"history": 0}, "setting 'history': must be at least 1"),
    ({"listen": "nowhere"}, "setting 'listen': 'nowhere' is not HOST:PORT"),
    ({"colour": "blue"}, "setting 'colour': is not a known key"),
])
def test_a_bad_setting_is_named_without_pydantic_s_wording(settings: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(settings, {}, {})
    assert str(caught.value).startswith(message)
    assert "Input should" not in str(caught.value) and "Value error" not in str(caught.value)
