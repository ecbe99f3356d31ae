"""Free TCP ports on localhost, for the tests that start a two-worker cluster (TF_CONFIG)."""

import socket
from typing import List


def free_ports(count: int) -> List[int]:
    """`count` ports that were free a moment ago (bound to port 0, read back, released)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
