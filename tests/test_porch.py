"""The keeper's porch alone (keeper/porch.py): it answers a websocket handshake as a
server must (the client checks Sec-WebSocket-Accept), holds the connection open,
counts it, ends it at the browser's close, refuses what is no websocket, and a
closed porch leaves no socket file. With a worker: tests/test_live.py."""

import socket
import time

import pytest
import websocket

from linohost.keeper import porch as porch_module
from linohost.keeper.porch import Porch, accept_key, client_frames


def test_accept_key_is_rfc_6455s():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_frames_are_counted_whole():
    masked_close = b"\x88\x82" + b"abcd" + b"xy"
    assert client_frames(masked_close + b"\x81") == ([8], len(masked_close))
    assert client_frames(b"\x81\xfe\x00") == ([], 0)         # an unfinished header


def _connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return websocket.create_connection("ws://localhost/s/WS/", socket=sock, timeout=5)


def _until(what, check, timeout=5):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.fixture
def porch(tmp_path):
    p = Porch().start()
    yield p
    p.stop()


def test_a_websocket_waits_at_the_porch_until_the_browser_closes(tmp_path, porch):
    path = tmp_path / "ws.sock"
    porch.open("s", path)
    ws = _connect(path)
    ws2 = _connect(path)
    _until("two waiting", lambda: porch.held("s") == 2)
    ws.settimeout(1)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()                                       # open and silent
    ws.close()                                          # a close frame, answered
    _until("one waiting", lambda: porch.held("s") == 1)
    porch.close("s")
    ws2.sock.settimeout(5)
    assert ws2.sock.recv(16) == b"\x88\x02\x03\xe9"       # its close frame: 1001
    assert not path.exists()


def test_what_is_no_websocket_is_refused(tmp_path, porch, monkeypatch):
    path = tmp_path / "ws.sock"
    porch.open("s", path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(b"GET /s/WS/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 503")
    sock.close()
    monkeypatch.setattr(porch_module, "MAX_WAITING", 1)
    ws = _connect(path)
    _until("one waiting", lambda: porch.held("s") == 1)
    with pytest.raises(websocket.WebSocketBadStatusException):
        _connect(path)                                  # one too many
    ws.close()


def test_the_porch_leaves_its_socket_file_when_the_keeper_stops(tmp_path):
    path = tmp_path / "ws.sock"
    p = Porch().start()
    p.open("s", path)
    p.stop()
    assert path.is_socket()                             # it marks a live site
    p = Porch().start()
    p.open("s", path)                                   # bound again, over it
    ws = _connect(path)
    _until("waiting again", lambda: p.held("s") == 1)
    ws.close()
    p.stop()
