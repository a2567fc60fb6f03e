"""What the server (builder/celery_queue.py) and the build workers (builder/worker.py) share about a build
task: its queue and name, its time limits, the Redis keys that track it, and its secrets as they travel.

A build's secrets travel sealed (`seal_secrets`: Fernet under the installation key that the server and its
workers share, SPACEHOST_SECRET_KEY): Redis and anyone reading it never see them in the clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.fernet import InvalidToken

from core.crypto import SecretBox
from core.errors import BuildFailed

QUEUE = "spacehost.builds"
TASK = "spacehost.build"
VISIBILITY_TIMEOUT_S = 7200
TIME_LIMIT_S = 3600  # hard; below VISIBILITY_TIMEOUT_S
SOFT_TIME_LIMIT_S = 3300  # the build gets this long, then reports BUILD_ERROR itself
LEASE_TTL_S = 10  # a worker renews its build's lease every LEASE_BEAT_S; a lapsed lease = a vanished worker
LEASE_BEAT_S = 2
RESULT_TTL_S = 86400
LOG_MAXLEN = 20000


SEALED = "__sealed__"  # the one key of a build's secrets as they travel


def seal_secrets(secrets: Mapping[str, str], key: bytes) -> dict[str, str]:
    """A build's secrets as its Celery message carries them: one token sealed with `key`."""
    return {SEALED: SecretBox(key).seal(json.dumps(dict(secrets)))}


def open_secrets(travelled: Mapping[str, str], key: bytes | None) -> dict[str, str]:
    """What `seal_secrets` sealed. A message without secrets may carry `{}`; anything else unsealed, or sealed
    with another key, is refused (BuildFailed, saying which key to set)."""
    if not travelled:
        return {}
    if set(travelled) != {SEALED}:
        raise BuildFailed("the build's secrets arrived unsealed; refusing them (server and worker versions differ?)")
    if key is None:
        raise BuildFailed("this worker cannot open the build's secrets: set SPACEHOST_SECRET_KEY to the server's")
    try:
        opened = json.loads(SecretBox(key).open(travelled[SEALED]))
    except InvalidToken:
        raise BuildFailed("the build's secrets do not open with this worker's SPACEHOST_SECRET_KEY: it must be "
                          "the server's") from None
    return {str(k): str(v) for k, v in opened.items()}


def result_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:result"


def lease_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:lease"


def log_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:log"


def cancel_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:cancel"


def attempts_key(build_id: str) -> str:
    return f"spacehost:build:{build_id}:attempts"
