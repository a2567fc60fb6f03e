"""The zygote's answers are read with poll(2): a server running many Spaces holds fds above 1024, where
select(2) fails ("filedescriptor out of range"), as the full suite's single process once did."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from scheduler.runtimes.zygote import _read_message


def test_an_answer_on_a_socket_above_fd_1024_is_read() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), max(hard, 2048)))  # as root, raised if need be
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)
    ours.close()
    try:
        with socket.socket(fileno=high) as sock:
            theirs.sendall(b'{"started": 7}\n')
            assert _read_message(sock, 5.0) == {"started": 7}
            with pytest.raises(TimeoutError):
                _read_message(sock, 0.05)
    finally:
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
