#!/usr/bin/env bash
# Slow HTTP clients cannot starve /healthz. Sixty connections from another
# address that send their request header a byte a second (so the idle timeout
# never fires) leave /healthz answering at once: one address gets at most
# max_per_ip slots. Forty such connections from the checker's own address are
# cut once their header is late (the header deadline), after which /healthz
# answers again, and the cut is counted in /metrics.
# timeout: 120
. "$(dirname "$0")/lib.sh"

cluster up 1 >/dev/null
wait_until 10 eval '[ "$(http_code node1 /healthz)" = 200 ]' || fail "/healthz not 200"

"$PY3" - "$(http_addr node1)" <<'PY'
import socket, sys, threading, time, urllib.request

host, port = sys.argv[1].rsplit(":", 1)
port = int(port)

def healthz(timeout=3.0):
    try:
        with urllib.request.urlopen("http://%s:%d/healthz" % (host, port), timeout=timeout) as r:
            return r.status
    except Exception as e:
        return repr(e)

class Slow:
    """Connections from `source` that send a header a byte a second, forever."""
    def __init__(self, source, n):
        self.socks, self.closed_by_server = [], 0
        for _ in range(n):
            s = socket.socket()
            s.bind((source, 0))
            s.connect((host, port))
            s.setblocking(False)
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
            self.socks.append(s)
        self.stop = False
        self.t = threading.Thread(target=self.dribble, daemon=True)
        self.t.start()

    def dribble(self):
        while not self.stop:
            for s in list(self.socks):
                try:
                    if s.recv(1, socket.MSG_PEEK) == b"":
                        raise ConnectionResetError()
                except BlockingIOError:
                    pass
                except OSError:
                    self.socks.remove(s)
                    self.closed_by_server += 1
                    s.close()
                    continue
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(1.0)

    def close(self):
        self.stop = True
        self.t.join()
        for s in self.socks:
            s.close()

# 1. Another address: /healthz answers while its connections are all open.
other = Slow("127.0.0.2", 60)
for i in range(6):  # checks spread over 3 s, while the slow ones dribble
    st = healthz()
    assert st == 200, "healthz with 60 slow connections from another address: %r" % (st,)
    time.sleep(0.5)
held = len(other.socks)
other.close()
assert held >= 10, "only %d slow connections were held open: no pressure" % held

# 2. Our own address: the slow ones are cut at their header deadline.
mine = Slow("127.0.0.1", 40)
deadline = time.time() + 30
while time.time() < deadline and (mine.socks or healthz(1.0) != 200):
    time.sleep(0.2)
left = len(mine.socks)
mine.close()
assert left == 0, "%d slow connections were never cut" % left
st = healthz()
assert st == 200, "healthz after the slow connections were cut: %r" % (st,)
print("slow connections cut: %d" % mine.closed_by_server)
PY
cut=$(http_get node1 /metrics | grep '^idunno_http_slow_connections_cut_total' | awk '{print $2}')
[ "${cut:-0}" -ge 1 ] || fail "no slow connection counted as cut: '$cut'"
echo "http slow ok (cut $cut)"
