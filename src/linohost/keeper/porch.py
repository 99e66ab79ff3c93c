"""The porch: the websockets of a live site while no worker serves it.

A site with channels (Noi) takes its websockets at ``SITE/apache/ws.sock``, which its
worker binds. While the site sleeps the keeper binds that path itself and answers
each websocket handshake (101) without waking the site: an open tab keeps a
connection that costs the keeper a file descriptor and no worker. When an HTTP
request wakes the site and its worker has bound the path (it says ``live``), the
porch hands every waiting websocket over: it opens one to the worker with the
browser's own handshake (its cookies: the same user) and relays both ways from then
on, so the tab receives the site's notifications without reconnecting. A browser
that opens its websocket while the worker runs reaches the worker directly.

The porch runs an asyncio loop in a thread of the keeper; the keeper calls
:meth:`Porch.open`, :meth:`Porch.hand_over` and :meth:`Porch.close` from its own.
"""

import asyncio
import base64
import hashlib
import logging
import os
import socket
import struct
import threading

log = logging.getLogger("linohost.keeper")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"     # RFC 6455, 1.3
MAX_HEAD = 16 * 1024        # a handshake longer than this is no browser's
MAX_WAITING = 64            # websockets one sleeping site may hold at the porch
MAX_BUFFERED = 64 * 1024    # what a waiting browser may send before the worker is there
HEAD_TIMEOUT = 10
#: Close codes: the site goes away (removed, keeper stops) or its worker did not answer.
GOING_AWAY, TRY_AGAIN = 1001, 1013


def accept_key(key):
    """The Sec-WebSocket-Accept of a handshake's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def parse_head(head):
    """(request line, [(name, value)], {lowercase name: value}) of an HTTP head."""
    lines = head.decode("latin-1").split("\r\n")
    fields = [tuple(part.strip() for part in line.split(":", 1))
              for line in lines[1:] if ":" in line]
    return lines[0], fields, {k.lower(): v for k, v in fields}


def close_frame(code):
    """A server's close frame (unmasked) with *code*."""
    return b"\x88\x02" + struct.pack("!H", code)


def client_frames(data):
    """The opcodes of the whole frames at the start of *data* (a browser's, masked)
    and how many bytes they take."""
    opcodes, at = [], 0
    while len(data) - at >= 2:
        length, head = data[at + 1] & 0x7F, 2
        if length == 126:
            if len(data) - at < 4:
                break
            length, head = struct.unpack_from("!H", data, at + 2)[0], 4
        elif length == 127:
            if len(data) - at < 10:
                break
            length, head = struct.unpack_from("!Q", data, at + 2)[0], 10
        end = at + head + (4 if data[at + 1] & 0x80 else 0) + length
        if end > len(data):
            break
        opcodes.append(data[at] & 0x0F)
        at = end
    return opcodes, at


class Waiting:
    """One browser's websocket at the porch: its handshake and what it sent since."""

    def __init__(self, reader, writer, head):
        self.reader, self.writer, self.head = reader, writer, head
        self.sent = b""
        self.handed = asyncio.Event()
        self.released = asyncio.Event()
        self.closed = False

    async def hold(self):
        """Keep what the browser sends until the worker is there (then set
        ``released``: the reader is free for the relay); end at the browser's close."""
        try:
            while not self.handed.is_set():
                reading = asyncio.ensure_future(self.reader.read(4096))
                handed = asyncio.ensure_future(self.handed.wait())
                await asyncio.wait({reading, handed}, return_when=asyncio.FIRST_COMPLETED)
                handed.cancel()
                if not reading.done():
                    reading.cancel()        # what it did not take stays in the reader
                (data,) = await asyncio.gather(reading, return_exceptions=True)
                if isinstance(data, BaseException):
                    if isinstance(data, asyncio.CancelledError):
                        return
                    data = b""
                if not data:
                    self.closed = True
                    return
                self.sent += data
                opcodes, _ = client_frames(self.sent)
                if 0x8 in opcodes or len(self.sent) > MAX_BUFFERED:  # the browser closes
                    self.writer.write(close_frame(GOING_AWAY if 0x8 in opcodes else 1009))
                    self.closed = True
                    return
        finally:
            self.released.set()


class Porch:
    """The porches of a host's live sites, served by one event loop in a thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.servers = {}           # site -> (asyncio server, path, inode) while asleep
        self.waiting = {}           # site -> {Waiting}
        self.relays = set()         # tasks relaying a handed-over websocket
        self.thread = threading.Thread(target=self.loop.run_forever, name="porch",
                                       daemon=True)

    def start(self):
        self.thread.start()
        return self

    def held(self, name):
        """How many websockets wait at *name*'s porch."""
        return len(self.waiting.get(name, ()))

    # -- called from the keeper's thread ------------------------------------------------
    def open(self, name, path):
        """Bind *path* (atomically over a stale one) and answer its websockets."""
        if not self.loop.is_running():
            return
        tmp = path.with_name("ws.keeper.sock")
        tmp.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(tmp))
            os.chmod(tmp, 0o666)            # the project directory keeps others out
            sock.listen(MAX_WAITING)
            sock.setblocking(False)
            os.replace(tmp, path)
        except OSError as e:
            sock.close()
            log.warning("%s: no porch for its websockets: %s", name, e)
            return
        inode = os.stat(path).st_ino
        asyncio.run_coroutine_threadsafe(self._open(name, sock, path, inode), self.loop).result(10)

    def hand_over(self, name, path):
        """*name*'s worker serves *path* now: relay the waiting websockets to it."""
        if name in self.servers and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._hand_over(name, path), self.loop)

    def close(self, name, unlink=True):
        """No porch for *name* any more: its waiting websockets are closed."""
        if self.loop.is_running():          # (after stop() nothing waits any more)
            asyncio.run_coroutine_threadsafe(self._close(name, unlink), self.loop).result(10)

    def stop(self):
        """Close every porch and relay; the socket files stay (the next keeper binds
        them again: they mark the live sites)."""
        for name in list(self.servers):
            self.close(name, unlink=False)

        async def relays():
            for task in list(self.relays):
                task.cancel()
        asyncio.run_coroutine_threadsafe(relays(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    # -- in the porch's loop -------------------------------------------------------------
    async def _open(self, name, sock, path, inode):
        if name in self.servers:
            self.servers.pop(name)[0].close()
        server = await asyncio.start_unix_server(
            lambda r, w: self._arrived(name, r, w), sock=sock)
        self.servers[name] = (server, path, inode)
        self.waiting.setdefault(name, set())

    async def _arrived(self, name, reader, writer):
        """A handshake: answer it, and hold the websocket until the worker is there."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                OSError):
            writer.close()
            return
        _, _, fields = parse_head(head)
        waiting = self.waiting.get(name)
        if (waiting is None or len(waiting) >= MAX_WAITING or len(head) > MAX_HEAD
                or fields.get("upgrade", "").lower() != "websocket"
                or "sec-websocket-key" not in fields
                or "sec-websocket-protocol" in fields):    # Lino's client asks for none
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await _drain_and_close(writer)
            return
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                     + accept_key(fields["sec-websocket-key"]).encode() + b"\r\n\r\n")
        one = Waiting(reader, writer, head)
        waiting.add(one)
        try:
            await one.hold()
        finally:
            waiting.discard(one)
        if one.closed:
            await _drain_and_close(writer)

    async def _hand_over(self, name, path):
        server, _, _ = self.servers.pop(name, (None, None, None))
        if server is None:
            return
        server.close()                      # the path is the worker's now
        for one in list(self.waiting.pop(name, ())):
            one.handed.set()
            task = asyncio.ensure_future(self._relay(name, one, path))
            self.relays.add(task)
            task.add_done_callback(self.relays.discard)

    async def _relay(self, name, one, path):
        """Open the browser's websocket at the worker (without extensions: the browser
        was answered without any) and pass the bytes both ways until one side ends."""
        await one.released.wait()
        if one.closed:
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 10)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("%s: a waiting websocket could not reach the worker: %s", name, e)
            one.writer.write(close_frame(TRY_AGAIN))
            await _drain_and_close(one.writer)
            return
        line, fields, _ = parse_head(one.head)
        head = "\r\n".join([line, *(f"{k}: {v}" for k, v in fields
                                    if k.lower() != "sec-websocket-extensions")]) + "\r\n\r\n"
        up_w.write(head.encode("latin-1"))
        try:
            answer = await asyncio.wait_for(up_r.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                OSError):
            answer = b""
        if not answer.startswith(b"HTTP/1.1 101"):
            log.warning("%s: the worker refused a waiting websocket: %r", name,
                        answer.split(b"\r\n", 1)[0])
            one.writer.write(close_frame(TRY_AGAIN))
            await _drain_and_close(one.writer)
            await _drain_and_close(up_w)
            return
        up_w.write(one.sent)
        try:
            await asyncio.gather(_pipe(one.reader, up_w), _pipe(up_r, one.writer))
        finally:
            one.writer.close()
            up_w.close()

    async def _close(self, name, unlink):
        server, path, inode = self.servers.pop(name, (None, None, None))
        if server is not None:
            server.close()
            if unlink:
                try:
                    if os.stat(path).st_ino == inode:
                        path.unlink()
                except FileNotFoundError:
                    pass
        for one in list(self.waiting.pop(name, ())):
            one.writer.write(close_frame(GOING_AWAY))
            await _drain_and_close(one.writer)


async def _pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        try:
            writer.write_eof()
        except OSError:
            pass


async def _drain_and_close(writer):
    try:
        await asyncio.wait_for(writer.drain(), 5)
    except (OSError, asyncio.TimeoutError):
        pass
    writer.close()
