"""Django's SECRET_KEY_FALLBACKS verify packages while a key rotation is under way."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from qengine.errors import SignatureError
from qengine.runtime import get_config, get_signer
from qengine.signing import Signer

OLD = "django-old-secret-key"


def signed_with(key: str) -> bytes:
    return Signer(key, get_config().name).dumps("task")


def test_secret_key_fallbacks_verify_and_never_sign() -> None:
    with override_settings(SECRET_KEY_FALLBACKS=[OLD]):
        config = get_config()
        assert config.secret_key == settings.SECRET_KEY
        assert config.secret_key_fallbacks == (OLD,)
        assert get_signer(config).loads(signed_with(OLD)) == "task"
        package = get_signer(config).dumps("task")
        assert Signer(settings.SECRET_KEY, config.name).loads(package) == "task"
    # The rotation is over: the old key is gone from the settings, and its packages with it.
    assert get_config().secret_key_fallbacks == ()
    with pytest.raises(SignatureError):
        get_signer(get_config()).loads(signed_with(OLD))


def test_q_cluster_fallbacks_win_over_django_ones() -> None:
    q_cluster = {**settings.Q_CLUSTER, "secret_key_fallbacks": ["queue-old-key"]}
    with override_settings(SECRET_KEY_FALLBACKS=[OLD], Q_CLUSTER=q_cluster):
        assert get_config().secret_key_fallbacks == ("queue-old-key",)


def test_django_fallbacks_are_not_taken_for_a_key_of_its_own() -> None:
    # Django's old keys are old SECRET_KEYs: they never signed a package of this key.
    q_cluster = {**settings.Q_CLUSTER, "secret_key": "queue-key"}
    with override_settings(SECRET_KEY_FALLBACKS=[OLD], Q_CLUSTER=q_cluster):
        config = get_config()
        assert config.secret_key == "queue-key"
        assert config.secret_key_fallbacks == ()
