"""Messages between a judge and a process it judges: one datagram each, validated.

A judge (trusted: it decides verdicts and holds the clock) and a runner (a process that runs
code under judgement) talk over a ``SOCK_SEQPACKET`` socket pair: every message is one
datagram of JSON, and may carry file descriptors (shared-memory buffers) with
``SCM_RIGHTS``.  Whatever arrives is checked against the pydantic models the receiver expects
at that moment; anything else (a datagram too large, not JSON, of another type, descriptors
nobody asked for) raises :class:`ProtocolViolation`.  The runner's side is untrusted once it
has loaded candidate code, so a violation there is the candidate's doing.

Tensors do not travel in messages: they go through :class:`SharedBuffer` (a ``memfd``
mapped by both processes), so a call's inputs and outputs cost one copy, not a pickle.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import socket
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from kbtool.errors import invalid

# No honest message comes near this; a bigger datagram is truncated by the kernel and refused.
MAX_MESSAGE = 1 << 20
T = TypeVar("T")


class ProtocolViolation(Exception):
    """The other side sent something the protocol does not allow."""


class ChannelClosed(Exception):
    """The other side closed its end (it exited or died)."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected ends; message boundaries are kept (one send, one receive)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel(Generic[T]):
    """One end of a socket pair; ``incoming`` validates what this end receives."""

    def __init__(self, sock: socket.socket, incoming: TypeAdapter[T]) -> None:
        self.sock = sock
        self.incoming = incoming

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: BaseModel, fds: Sequence[int] = ()) -> None:
        data = message.model_dump_json().encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def readable(self, timeout_s: float | None) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        return bool(ready)

    def receive(self, max_fds: int = 0, timeout_s: float | None = None,
                adapter: TypeAdapter[Any] | None = None) -> tuple[Any, list[int]]:
        """The next message (validated by ``adapter``, else by ``incoming``) and the
        descriptors it carried; ``TimeoutError`` when nothing came within ``timeout_s``."""
        if timeout_s is not None and not self.readable(timeout_s):
            raise TimeoutError
        data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE + 1, max(max_fds, 1))
        try:
            if not data and not fds:
                raise ChannelClosed
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) > MAX_MESSAGE:
                raise ProtocolViolation(f"a message of over {MAX_MESSAGE} bytes or with too "
                                        "many descriptors")
            if len(fds) > max_fds:
                raise ProtocolViolation(f"a message with {len(fds)} file descriptors "
                                        f"(at most {max_fds} expected)")
            try:
                return (adapter or self.incoming).validate_json(data), fds
            except ValidationError as exc:
                raise ProtocolViolation(f"a malformed message ({invalid(exc, 'message')}): "
                                        f"{data[:120]!r}") from None
        except BaseException:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise

    def close(self) -> None:
        self.sock.close()


class SharedBuffer:
    """A ``memfd`` of ``size`` bytes mapped into this process; its descriptor can be sent to
    another process, which maps the same pages (:meth:`attach`)."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = max(int(size), 1)
        if fd is None:
            fd = os.memfd_create("kbtool", os.MFD_CLOEXEC)
            os.ftruncate(fd, self.size)
        elif os.fstat(fd).st_size < self.size:
            os.close(fd)
            raise ProtocolViolation(f"a shared buffer smaller than its {self.size} bytes")
        self.fd = fd
        self.map = mmap.mmap(fd, self.size)

    @classmethod
    def attach(cls, fd: int, size: int) -> SharedBuffer:
        return cls(size, fd)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self.map.close()  # a view still exported (a tensor): the mapping lives on with it
        with contextlib.suppress(OSError):
            os.close(self.fd)

