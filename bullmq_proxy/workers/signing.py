"""Standard Webhooks signatures on endpoint calls, so endpoints can trust what they receive.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the signature header lists
one ``v1,<base64 HMAC-SHA256>`` per secret, so a secret can be rotated without downtime: sign
with the old and the new one until every endpoint knows the new one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from bullmq_proxy.errors import invalid

PREFIX = "whsec_"
MIN_SECRET_BYTES = 16
MAX_SECRETS = 2


def secret_key(secret: str) -> bytes:
    """``whsec_<base64>`` secrets (the Standard Webhooks form) sign with the decoded bytes;
    any other text signs with its UTF-8 bytes."""
    if secret.startswith(PREFIX):
        return base64.b64decode(secret[len(PREFIX):], validate=True)
    return secret.encode("utf-8")


def validate_secrets(value: object, field: str) -> tuple[str, ...]:
    """One secret, or a list of up to two during a rotation."""
    secrets = [value] if isinstance(value, str) else value
    if not isinstance(secrets, list) or not 1 <= len(secrets) <= MAX_SECRETS:
        raise invalid(field, f"{field} must be a string or a list of one or two strings")
    for secret in secrets:
        if not isinstance(secret, str):
            raise invalid(field, f"{field} must hold strings only")
        try:
            key = secret_key(secret)
        except (binascii.Error, ValueError):
            raise invalid(field, f"{field}: a whsec_ secret must be base64 after the prefix") \
                from None
        if len(key) < MIN_SECRET_BYTES:
            raise invalid(field, f"{field}: each secret must be at least "
                                 f"{MIN_SECRET_BYTES} bytes long")
    return tuple(secrets)


def signature_headers(
    secrets: Sequence[str], message_id: str, timestamp: int, body: bytes,
) -> dict[str, str]:
    content = f"{message_id}.{timestamp}.".encode() + body
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key(s), content, hashlib.sha256).digest())
        .decode("ascii")
        for s in secrets
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
