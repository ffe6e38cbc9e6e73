"""A loopback TCP proxy with fault switches, put between a store and a real server.

``blackhole``: bytes in both directions are read and dropped, sockets stay open (a dead network
or a partition: nothing arrives, nothing is refused). ``reset()``: every open connection is
aborted with a TCP RST (a middlebox or a failover dropping connections mid-query). The target
port can change while the proxy runs (a restarted server listens on a new port), so a store's
DSN stays the same across a ``kill -9`` and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class FaultProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blackhole = False
        self.dropped = 0  # bytes dropped by the blackhole (a test can wait on it)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def dsn(self, server_dsn: str) -> str:
        """``server_dsn`` with its port replaced by the proxy's."""
        return server_dsn.replace(f":{self.target_port}/", f":{self.port}/")

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def connections(self) -> int:
        return len(self._pairs)

    def reset(self) -> None:
        """Abort every proxied connection with an RST on both sides."""
        for pair in list(self._pairs):
            for writer in pair:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                writer.transport.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the server is down: refuse, as the server itself would
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                data = await source.read(65536)
                if not data:
                    break
                if self.blackhole:
                    self.dropped += len(data)
                    continue
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other (EOF travels even in a blackhole, so a client that
            # terminates its dead connection frees the server's backend, as a timeout would).
            self._pairs.discard(pair)
            for writer in pair:
                writer.transport.abort() if self.blackhole else writer.close()
