"""HMAC-SHA256 signatures of what schedulers and workers send one another (issue #12).

Anyone who can write to Kafka or to the broker's Redis could otherwise report a node done with an
output of their choosing, or have a worker run any handler. Senders sign the exact bytes they send,
with a key only the engine's processes hold (WORKFLOW_SIGNING_KEY); receivers refuse what is
unsigned or signed otherwise. The signature also covers what the bytes are for (the logical topic,
or the Celery task name), so that a signed report cannot be replayed as a workflow start.
"""

import hashlib
import hmac
from collections.abc import Sequence
from functools import cache

from workflows.conf import conf
from workflows.messages import SIGNATURE_HEADER, InvalidMessage

Headers = Sequence[tuple[str, bytes | None]] | None


def sign(purpose: str, value: bytes) -> str:
    """The signature of `value` sent for `purpose`: 64 hexadecimal digits."""
    mac = keyed(conf().signing_key, purpose).copy()
    mac.update(value)
    return mac.hexdigest()


@cache
def keyed(key: bytes, purpose: str) -> hmac.HMAC:
    """The HMAC state after the key and the purpose, copied for each message rather than made again."""
    return hmac.new(key, purpose.encode() + b"\0", hashlib.sha256)


def check(purpose: str, value: bytes, signature: object) -> None:
    """Raise InvalidMessage when `signature` is missing or is not that of `value` for `purpose`."""
    if not signature:
        raise InvalidMessage("missing_signature", f"the message has no {SIGNATURE_HEADER} header")
    given = signature if isinstance(signature, bytes) else str(signature).encode()
    if not hmac.compare_digest(sign(purpose, value).encode(), given):
        raise InvalidMessage(
            "bad_signature",
            f"the {SIGNATURE_HEADER} header does not match the value: not signed with WORKFLOW_SIGNING_KEY",
        )


def verified(purpose: str, value: bytes | None, headers: Headers) -> bytes | None:
    """The value of a consumed Kafka message, once its signature header is checked."""
    signature = next((given for name, given in headers or () if name == SIGNATURE_HEADER), None)
    check(purpose, value or b"", signature)
    return value


def header(purpose: str, value: bytes) -> list[tuple[str, bytes]]:
    """The headers of a Kafka message carrying `value` for `purpose`."""
    return [(SIGNATURE_HEADER, sign(purpose, value).encode())]
