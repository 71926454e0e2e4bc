"""Who a process is, for what it writes down: host and pid (`process_identity`, the writer of a row), and
for a claim in Redis (a breaker's probe, the controller's leader lock) a random part as well, so two
holders in one process (two runtimes, a test's second controller) still differ."""

from __future__ import annotations

import os
import socket
import uuid


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_identity() -> str:
    return f"{process_identity()}:{uuid.uuid4().hex[:6]}"
