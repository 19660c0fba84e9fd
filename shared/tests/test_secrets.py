"""``SecretBox``: what is sealed opens only under its own context and a key that knows it."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pressroom_kit.secrets import SecretBox

pytestmark = pytest.mark.unit

K1 = base64.b64encode(b"k" * 32).decode()
K2 = base64.b64encode(b"j" * 32).decode()


def test_round_trip_under_the_same_context():
    box = SecretBox({"k1": K1}, "k1")
    sealed = box.encrypt("refresh-token-é", context="connection-1")
    assert sealed.startswith("k1:") and "refresh-token" not in sealed
    assert box.decrypt(sealed, context="connection-1") == "refresh-token-é"
    assert box.encrypt("same", context="c") != box.encrypt("same", context="c")  # fresh nonce


def test_another_context_is_refused():
    box = SecretBox({"k1": K1}, "k1")
    sealed = box.encrypt("secret", context="connection-1")
    with pytest.raises(ValueError, match="wrong key or tampered"):
        box.decrypt(sealed, context="connection-2")


def test_a_tampered_value_is_refused():
    box = SecretBox({"k1": K1}, "k1")
    kid, _, blob = box.encrypt("secret", context="c").partition(":")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(ValueError, match="wrong key or tampered"):
        box.decrypt(f"{kid}:{base64.b64encode(bytes(raw)).decode()}", context="c")


def test_a_value_under_another_key_with_the_same_id_is_refused():
    sealed = SecretBox({"k1": K1}, "k1").encrypt("secret", context="c")
    with pytest.raises(ValueError, match="wrong key or tampered"):
        SecretBox({"k1": K2}, "k1").decrypt(sealed, context="c")


def test_rotation_seals_with_the_new_key_and_still_opens_the_old():
    old = SecretBox({"k1": K1}, "k1").encrypt("secret", context="c")
    rotated = SecretBox({"k1": K1, "k2": K2}, "k2")
    assert rotated.decrypt(old, context="c") == "secret"
    new = rotated.encrypt("secret", context="c")
    assert new.startswith("k2:")
    assert SecretBox({"k2": K2}, "k2").decrypt(new, context="c") == "secret"


def test_an_unknown_key_id_is_a_clear_error():
    sealed = SecretBox({"k1": K1}, "k1").encrypt("secret", context="c")
    with pytest.raises(ValueError, match="unknown key 'k1'"):
        SecretBox({"k2": K2}, "k2").decrypt(sealed, context="c")
    with pytest.raises(ValueError, match="no encryption key with id 'k3'"):
        SecretBox({"k1": K1}, "k3")


def test_the_format_is_the_one_webhook_rows_were_sealed_in():
    """``<kid>:base64(nonce ‖ ciphertext ‖ tag)`` with the context as associated data: rows
    written before the box moved into the kit still open."""
    nonce = b"\x01" * 12
    stored = "k1:" + base64.b64encode(
        nonce + AESGCM(b"k" * 32).encrypt(nonce, b"whsec_abc", b"endpoint-1")
    ).decode("ascii")
    assert SecretBox({"k1": K1}, "k1").decrypt(stored, context="endpoint-1") == "whsec_abc"
