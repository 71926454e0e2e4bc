"""Who holds a claim in Redis (a breaker's probe, the controller's leader lock): host, pid and a random
part, so two holders in one process (two runtimes, a test's second controller) still differ."""

from __future__ import annotations

import os
import socket
import uuid


def holder_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
