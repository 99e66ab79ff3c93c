"""Whether served pages answer, so that `serve` names its URL only once they do."""

import http.client
import ssl
import time
from urllib.parse import urlsplit


def answers(url, address, port, timeout=60):
    """Whether GET *url* answers 200, connecting to *address*:*port* (the URL's host
    name goes in the Host header: NAME.localhost need not resolve)."""
    u = urlsplit(url)
    if u.scheme == "https":         # our own server, maybe with a local test certificate
        conn = http.client.HTTPSConnection(address, port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", u.path or "/", headers={"Host": u.netloc})
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_answering(urls, address, port, alive, timeout):
    """Wait until each of *urls* answers, in turn, while *alive()*; return those that
    did not within *timeout* seconds (all of them if the server died)."""
    deadline = time.monotonic() + timeout
    waiting = list(urls)
    while waiting and alive() and time.monotonic() < deadline:
        if answers(waiting[0], address, port, timeout=max(1, deadline - time.monotonic())):
            waiting.pop(0)
        else:
            time.sleep(0.2)
    return waiting
