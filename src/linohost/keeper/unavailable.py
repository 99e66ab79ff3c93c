"""The keeper's own answer for a site whose worker cannot start: a 503 page that
names the site and tells the visitor nothing private (the reason is in the log)."""

import html

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{name}: temporarily unavailable</title>
<style>body{{font-family:sans-serif;margin:3em;max-width:40em}}</style></head>
<body><h1>{name} is temporarily unavailable</h1>
<p>This site cannot start right now. Its administrator can see why in the
host's logs. Please try again in a few minutes.</p></body></html>
"""


def answer_unavailable(conn, name, retry_after=30):
    """Read the request head from *conn* (a connection from the web server),
    answer 503 and close it."""
    body = PAGE.format(name=html.escape(name)).encode()
    try:
        conn.setblocking(True)
        conn.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                     b"Content-Type: text/html; charset=utf-8\r\n"
                     b"Retry-After: %d\r\nCache-Control: no-store\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (retry_after, len(body))
                     + body)
    except OSError:
        pass
    finally:
        conn.close()
