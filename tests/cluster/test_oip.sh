#!/usr/bin/env bash
# The Open Inference Protocol's REST endpoints (docs/http.md, "Online
# inference") on a running cluster, with requests written by hand from the
# protocol's specification: raw HTTP over a socket, the JSON bodies and the
# binary tensor data extension's bytes built here, not by a client library.
#  - health (live, ready), server metadata, model metadata and readiness;
#  - infer through every node: JSON (base64 images, flat and nested data)
#    and binary (Inference-Header-Content-Length), the classification
#    extension ("score:index:label"), the request id echoed; each top-1
#    equal to a bare ONNX Runtime run's (tests/tools/ref_classify);
#  - every error: 400 for malformed requests (JSON, shape, datatype, binary
#    sizes, an image that is not one), 404 unknown endpoint, model or
#    version, 405 wrong method, 413 over the body limit, 401 without the
#    bearer token; each a JSON {"error": ...}, and the node still serves.
# timeout: 120
. "$(dirname "$0")/lib.sh"

text_lines 6

cluster up 3 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null
TOKEN=$("$IDUNNO" token)

"$PY3" - "$D" "$TOKEN" "$(http_addr node1)" "$(http_addr node2)" "$(http_addr node3)" <<'PY' || fail "the /v2 checks"
import base64, json, os, socket, struct, sys

D, TOKEN, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
ref = {os.path.basename(l.split()[0]): int(l.split()[1]) for l in open(D + "/ref.txt")}
images = sorted(os.path.join(D, "lines", f) for f in os.listdir(D + "/lines"))
data = [open(p, "rb").read() for p in images]
names = [os.path.basename(p) for p in images]
checks = 0

def http(addr, method, path, body=b"", headers=None, token=True, declared=None):
    """One request written by hand; (status, headers dict, body bytes).
    declared: a Content-Length to announce instead of the body's (the body
    is then not sent: the server must answer from the header alone)."""
    host, port = addr.rsplit(":", 1)
    head = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % addr, "Connection: close"]
    if token:
        head.append("Authorization: Bearer " + TOKEN)
    for k, v in (headers or {}).items():
        head.append("%s: %s" % (k, v))
    if method == "POST":
        head.append("Content-Length: %d" % (declared if declared is not None else len(body)))
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    s = socket.create_connection((host, int(port)), timeout=40)
    s.sendall(raw)
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
        body, rest2 = b"", rest
        while rest2:
            n, _, rest2 = rest2.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            body += rest2[:n]
            rest2 = rest2[n + 2:]
        rest = body
    return status, hdrs, rest

def expect(got, status, what):
    global checks
    code, hdrs, body = got
    assert code == status, "%s: status %d, expected %d: %r" % (what, code, status, body[:300])
    assert hdrs.get("content-type", "").startswith("application/json"), (what, hdrs)
    doc = json.loads(body) if body else {}
    if status >= 400:
        assert isinstance(doc.get("error"), str) and doc["error"], (what, doc)
    checks += 1
    return doc

A = addrs[0]
# -- health and metadata
expect(http(A, "GET", "/v2/health/live"), 200, "live")
assert expect(http(A, "GET", "/v2/health/ready"), 200, "ready") == {"ready": True}
srv = expect(http(A, "GET", "/v2"), 200, "server metadata")
assert srv["name"] == "idunno" and "classification" in srv["extensions"] and \
    "binary_tensor_data" in srv["extensions"], srv
meta = expect(http(A, "GET", "/v2/models/text_direction"), 200, "model metadata")
assert meta["name"] == "text_direction" and meta["versions"] == ["1"], meta
assert meta["inputs"][0]["datatype"] == "BYTES" and meta["outputs"][0]["shape"] == [-1, 2], meta
expect(http(A, "GET", "/v2/models/text_direction/versions/1"), 200, "version metadata")
r = expect(http(A, "GET", "/v2/models/text_direction/ready"), 200, "model ready")
assert r["ready"] is True, r
expect(http(A, "GET", "/v2/models/nosuch"), 404, "unknown model metadata")
expect(http(A, "GET", "/v2/models/text_direction/versions/9"), 404, "unknown version metadata")
expect(http(A, "GET", "/v2/models/text_direction/ready/x"), 404, "unknown endpoint")
expect(http(A, "GET", "/v2/models/bad%20name"), 404, "a name outside the rule")
expect(http(A, "POST", "/v2/health/live", b"{}"), 405, "POST to a GET endpoint")
expect(http(A, "GET", "/v2/models/text_direction/infer"), 405, "GET of infer")

def check_answer(doc, idx, k, what, id_=None):
    assert doc["model_name"] == "text_direction" and doc["model_version"] == "1", (what, doc)
    if id_ is not None:
        assert doc.get("id") == id_, (what, doc)
    out = doc["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [len(idx), k], (what, out)
    for row, i in enumerate(idx):
        entries = out["data"][row * k:(row + 1) * k]
        score, index, label = entries[0].split(":")
        assert int(index) == ref[names[i]], "%s: %s top-1 %s, the bare run says %d" % (
            what, names[i], index, ref[names[i]])
        assert label == ["0", "180"][int(index)] and 0 <= float(score) <= 1, (what, entries)

INFER = "/v2/models/text_direction/infer"
def json_infer(idx, nested=False, k=2, id_="r1"):
    elems = [base64.b64encode(data[i]).decode() for i in idx]
    return json.dumps({
        "id": id_,
        "inputs": [{"name": "image", "datatype": "BYTES",
                    "shape": [len(idx), 1] if nested else [len(idx)],
                    "data": [[e] for e in elems] if nested else elems}],
        "outputs": [{"name": "classification", "parameters": {"classification": k}}],
    }).encode()

def binary_infer(idx, k=1):
    blob = b"".join(struct.pack("<I", len(data[i])) + data[i] for i in idx)
    head = json.dumps({
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(idx)],
                    "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "classification", "parameters": {"classification": k}}],
    }).encode()
    return head, blob

# -- infer through every node, JSON and binary
for n, addr in enumerate(addrs):
    idx = [n, (n + 3) % len(data)]
    doc = expect(http(addr, "POST", INFER, json_infer(idx, id_="req-%d" % n),
                      {"Content-Type": "application/json"}), 200, "JSON infer via node%d" % (n + 1))
    check_answer(doc, idx, 2, "JSON infer via node%d" % (n + 1), "req-%d" % n)
    head, blob = binary_infer(idx)
    doc = expect(http(addr, "POST", INFER, head + blob,
                      {"Content-Type": "application/octet-stream",
                       "Inference-Header-Content-Length": str(len(head))}),
                 200, "binary infer via node%d" % (n + 1))
    check_answer(doc, idx, 1, "binary infer via node%d" % (n + 1))
doc = expect(http(A, "POST", INFER, json_infer([0, 1, 2], nested=True)), 200, "nested data")
check_answer(doc, [0, 1, 2], 2, "nested data")
doc = expect(http(A, "POST", "/v2/models/text_direction/versions/1/infer", json_infer([4])),
             200, "infer of a version")
check_answer(doc, [4], 2, "infer of a version")

# -- errors of infer
def bad(body, what, status=400, path=INFER, headers=None):
    expect(http(A, "POST", path, body, headers), status, what)

bad(b"{", "malformed JSON")
bad(b"[]", "not an object")
bad(json.dumps({"inputs": []}).encode(), "no inputs")
two = json.loads(json_infer([0]))
two["inputs"].append(dict(two["inputs"][0]))
bad(json.dumps(two).encode(), "two inputs")
f = json.loads(json_infer([0]))
f["inputs"][0]["datatype"] = "FP32"
f["inputs"][0]["data"] = [0.5] * 3
f["inputs"][0]["shape"] = [1, 3]
bad(json.dumps(f).encode(), "an FP32 tensor")
s = json.loads(json_infer([0, 1]))
s["inputs"][0]["shape"] = [3]
bad(json.dumps(s).encode(), "shape against data")
e = json.loads(json_infer([0]))
e["inputs"][0]["data"] = ["!!!not base64!!!"]
bad(json.dumps(e).encode(), "bad base64")
c = json.loads(json_infer([0]))
c["outputs"][0]["parameters"]["classification"] = 0
bad(json.dumps(c).encode(), "classification 0")
head, blob = binary_infer([0, 1])
bad(head + blob[:-5], "binary data shorter than declared",
    headers={"Inference-Header-Content-Length": str(len(head))})
bad(head + blob, "header length past the body",
    headers={"Inference-Header-Content-Length": str(len(head + blob) + 1)})
bad(head + blob, "header length not a number", headers={"Inference-Header-Content-Length": "x1"})
noise = json.loads(json_infer([0, 1]))
noise["inputs"][0]["data"][1] = base64.b64encode(os.urandom(3000)).decode()
bad(json.dumps(noise).encode(), "an element that is not an image")
bad(json_infer([0]), "unknown model", 404, "/v2/models/nosuch/infer")
bad(json_infer([0]), "unknown version", 404, "/v2/models/text_direction/versions/7/infer")
expect(http(A, "POST", INFER, json_infer([0]), token=False), 401, "infer without the token")
expect(http(A, "POST", INFER, b"", declared=65 << 20), 413, "a body announced over 64 MiB")

# -- still serving after all of it
doc = expect(http(A, "POST", INFER, json_infer([5])), 200, "infer after the errors")
check_answer(doc, [5], 2, "infer after the errors")
print("%d /v2 checks passed" % checks)
PY
echo ok
