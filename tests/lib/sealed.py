"""Opens the codes guard seals for notify (lib/seal.h), as notify does: tests that stand in for
notify, or check what a player was sent, read a code only this way. Nothing else on the bus holds
it in the clear."""
import base64
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# The development key ring of guard and notify (SEAL_DEV_KEYS in lib/seal.h).
DEV_KEYS = "dev:dev-only-code-seal-key-shared-by-guard-and-notify"


def open_sealed(sealed, context, keys=DEV_KEYS):
    """The value of sealed ("v1.<kid>.<base64url>") for context (e.g. "unlock\\n<account>")."""
    version, kid, b64 = sealed.split(".", 2)
    assert version == "v1", sealed
    ring = dict(k.split(":", 1) for k in keys.split(","))
    key = hmac.new(ring[kid].encode(), f"seal v1 {kid}".encode(), hashlib.sha256).digest()
    raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
    return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()


def unlock_code(action, keys=DEV_KEYS):
    """The unlock code of a lock's account.action event."""
    return open_sealed(action["sealed_code"], "unlock\n" + action["account_id"], keys)


def seal(value, context, keys=DEV_KEYS):
    """value sealed for context with the first key of keys, as guard seals it."""
    import os
    kid, secret = keys.split(",")[0].split(":", 1)
    key = hmac.new(secret.encode(), f"seal v1 {kid}".encode(), hashlib.sha256).digest()
    nonce = os.urandom(12)
    raw = nonce + AESGCM(key).encrypt(nonce, value.encode(), context.encode())
    return f"v1.{kid}." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def answer_link(action, keys=DEV_KEYS):
    """The "was it you?" link of an account.action event (guard's answer.c)."""
    return open_sealed(action["sealed_answer"], "answer\n" + action["account_id"], keys)


def answer_token(action, keys=DEV_KEYS):
    """The one-time token of that link (after "#answer=")."""
    return answer_link(action, keys).split("#answer=", 1)[1]
