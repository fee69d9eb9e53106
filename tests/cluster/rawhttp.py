"""HTTP/1.1 written by hand, for the tests of the /v2 endpoints: what goes on
the wire is exactly what the test says, not what a client library makes of
it (tests/cluster/test_oip.sh)."""
import socket


def exchange(addr, method, path, body=b"", headers=None, declared=None):
    """One request on a connection of its own; (status, headers dict with
    lower-case names, body bytes, a chunked body joined). declared: a
    Content-Length to announce instead of the body's."""
    host, port = addr.rsplit(":", 1)
    head = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % addr, "Connection: close"]
    head += ["%s: %s" % kv for kv in (headers or {}).items()]
    if method == "POST":
        head.append("Content-Length: %d" % (declared if declared is not None else len(body)))
    s = socket.create_connection((host, int(port)), timeout=40)
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    top, _, rest = out.partition(b"\r\n\r\n")
    lines = top.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    if hdrs.get("transfer-encoding") == "chunked":
        joined = b""
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            joined += rest[:n]
            rest = rest[n + 2:]
        rest = joined
    return status, hdrs, rest
