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
#    bearer token; each a JSON {"error": ...}, and the node still serves;
#  - tensor inputs on the tiny CNN: FP32 in JSON (flat and nested, [N,C,H,W]
#    and [C,H,W]) and binary, UINT8 in JSON and binary, each answering as
#    the same image sent as BYTES (every class's score, so top-1 included),
#    the tensors being that image's preprocessed form computed here from
#    the card; and each tensor error (datatype, data against the shape,
#    shape against the model, binary sizes, a NaN, a tensor with images).
# timeout: 150
. "$(dirname "$0")/lib.sh"

text_lines 6

cluster up 3 >/dev/null
wait_leader node1
cli node1 train text_direction --file "$M" --card "$CARD" >/dev/null
TOKEN=$("$IDUNNO" token)

PYTHONPATH="$ROOT/tests/cluster" "$PY3" - "$D" "$TOKEN" "$(http_addr node1)" "$(http_addr node2)" "$(http_addr node3)" <<'PY' || fail "the /v2 checks"
import base64, json, os, struct, sys
from rawhttp import exchange

D, TOKEN, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
ref = {os.path.basename(l.split()[0]): int(l.split()[1]) for l in open(D + "/ref.txt")}
images = sorted(os.path.join(D, "lines", f) for f in os.listdir(D + "/lines"))
data = [open(p, "rb").read() for p in images]
names = [os.path.basename(p) for p in images]
checks = 0

def http(addr, method, path, body=b"", headers=None, token=True, declared=None):
    """One request written by hand (rawhttp.py); (status, headers, body).
    declared: a Content-Length to announce instead of the body's (the body
    is then not sent: the server must answer from the header alone)."""
    h = dict({"Authorization": "Bearer " + TOKEN} if token else {}, **(headers or {}))
    return exchange(addr, method, path, body, h, declared)

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
# text_direction's card: 48x192 RGB, NCHW
assert meta["inputs"][1] == {"name": "input", "datatype": "FP32", "shape": [-1, 3, 48, 192]}, meta
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

# Tensors. tiny_cnn's card (its metadata): 32x32, crop to 32, (v/255 - 0.5) /
# 0.25, NCHW; tiny_u8 is the same file with a card that feeds pixels as they
# are (scale 255, mean 0, std 1), so that a UINT8 tensor of an image's
# pixels is its preprocessed form. Both answer all 10 classes' scores.
cli node1 train tiny_cnn --file "$ROOT/models/tiny_cnn.onnx" --top-k 10 >/dev/null
cli node1 train tiny_u8 --file "$ROOT/models/tiny_cnn.onnx" --top-k 10 --scale 255 \
  --mean 0,0,0 --std 1,1,1 >/dev/null
IDUNNO_BIN=$IDUNNO NODE1=$(addr node1) PYTHONPATH="$ROOT/tests/cluster" \
  "$PY3" - "$TOKEN" "$(http_addr node1)" "$(http_addr node2)" <<'PY' || fail "the /v2 tensor checks"
import base64, json, os, random, struct, subprocess, sys, threading, zlib
from rawhttp import exchange

TOKEN, addrs = sys.argv[1], sys.argv[2:]
checks = 0

def http(addr, body, path, headers=None):
    """A POST written by hand (rawhttp.py): (status, the JSON answer)."""
    status, _, rest = exchange(addr, "POST", path, body,
                               dict({"Authorization": "Bearer " + TOKEN}, **(headers or {})))
    return status, json.loads(rest)

def png(w, h, px):
    """An 8-bit RGB PNG of the pixels, row after row (filter 0 on every row)."""
    raw = b"".join(b"\0" + bytes(px[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

# Images already 32x32, so the card's crop is the identity and the
# preprocessing is per pixel, computed here in float32 as the card says.
rnd = random.Random(11)
pixels = [[rnd.randrange(256) for _ in range(32 * 32 * 3)] for _ in range(3)]
# small values: through tiny_u8 (pixels fed as they are) they keep the
# model's output away from saturation
pixels += [[rnd.randrange(3) for _ in range(32 * 32 * 3)] for _ in range(2)]
images = [png(32, 32, p) for p in pixels]
INV, SUB = f32(1.0 / f32(255.0 * 0.25)), f32(0.5 / 0.25)
def chw(p, norm):
    """The image's tensor [3, 32, 32] (flat, row-major) from its HWC pixels."""
    return [norm(p[(y * 32 + x) * 3 + c]) for c in range(3) for y in range(32) for x in range(32)]
prep = [chw(p, lambda v: f32(f32(v * INV) - SUB)) for p in pixels]
raw8 = [chw(p, lambda v: v) for p in pixels]

def infer_path(model):
    return "/v2/models/%s/infer" % model

def scores(doc, n, what):
    """Each row of a 10-class answer as {index: score}, and its top-1."""
    out = doc["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [n, 10], (what, out)
    rows = []
    for r in range(n):
        entries = [e.split(":") for e in out["data"][r * 10:(r + 1) * 10]]
        rows.append(({int(i): float(s) for s, i in entries}, int(entries[0][1])))
    return rows

def expect_ok(got, n, what):
    global checks
    code, doc = got
    assert code == 200, "%s: status %d: %r" % (what, code, doc)
    checks += 1
    return scores(doc, n, what)

ASK_ALL = [{"name": "classification", "parameters": {"classification": 10}}]
def bytes_rows(model, idx):
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(idx)],
                                   "data": [base64.b64encode(images[i]).decode() for i in idx]}],
                       "outputs": ASK_ALL}).encode()
    return expect_ok(http(addrs[0], body, infer_path(model)), len(idx), "BYTES via %s" % model)

ref = {"tiny_cnn": bytes_rows("tiny_cnn", [0, 1, 2]), "tiny_u8": bytes_rows("tiny_u8", [3, 4])}
# The answers differ between images: a tensor answered as another image,
# or as no image at all, cannot pass the comparison below.
for model, rows in ref.items():
    firsts = [row[0][row[1]] for row in rows]
    assert len(set(round(v, 4) for v in firsts)) == len(firsts), (model, firsts)

def same_as_bytes(rows, model, idx, what):
    for got, want in zip(rows, [ref[model][i] for i in idx]):
        assert got[1] == want[1], "%s: top-1 %d, the image's is %d" % (what, got[1], want[1])
        for k, v in want[0].items():
            assert abs(got[0][k] - v) < 1e-4, "%s: class %d %g, the image's %g" % (
                what, k, got[0][k], v)

def nest(flat, shape):
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0]
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]

def tensor_json(dt, values, shape, nested):
    flat = [v for t in values for v in t]
    return json.dumps({"id": "t", "inputs": [{"name": "input", "datatype": dt, "shape": shape,
                       "data": nest(flat, shape) if nested else flat}],
                       "outputs": ASK_ALL}).encode()

def tensor_binary(dt, values, shape, size=None, blob=None):
    flat = [v for t in values for v in t]
    if blob is None:
        blob = struct.pack("<%d%s" % (len(flat), "f" if dt == "FP32" else "B"), *flat)
    head = json.dumps({"inputs": [{"name": "input", "datatype": dt, "shape": shape,
                                   "parameters": {"binary_data_size":
                                                  len(blob) if size is None else size}}],
                       "outputs": ASK_ALL}).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head)),
                         "Content-Type": "application/octet-stream"}

# -- FP32 through tiny_cnn, in every form, through two nodes
TINY = infer_path("tiny_cnn")
for addr in addrs:
    rows = expect_ok(http(addr, tensor_json("FP32", [prep[0], prep[2]], [2, 3, 32, 32], False),
                          TINY), 2, "FP32 JSON flat")
    same_as_bytes(rows, "tiny_cnn", [0, 2], "FP32 JSON flat via " + addr)
    rows = expect_ok(http(addr, tensor_json("FP32", [prep[1], prep[0]], [2, 3, 32, 32], True),
                          TINY), 2, "FP32 JSON nested")
    same_as_bytes(rows, "tiny_cnn", [1, 0], "FP32 JSON nested via " + addr)
    body, hdrs = tensor_binary("FP32", [prep[2], prep[1], prep[0]], [3, 3, 32, 32])
    rows = expect_ok(http(addr, body, TINY, hdrs), 3, "FP32 binary")
    same_as_bytes(rows, "tiny_cnn", [2, 1, 0], "FP32 binary via " + addr)
rows = expect_ok(http(addrs[0], tensor_json("FP32", [prep[1]], [3, 32, 32], True), TINY), 1,
                 "FP32 [C,H,W]")
same_as_bytes(rows, "tiny_cnn", [1], "FP32 [C,H,W]")
body, hdrs = tensor_binary("FP32", [prep[2]], [3, 32, 32])
rows = expect_ok(http(addrs[0], body, TINY, hdrs), 1, "FP32 binary [C,H,W]")
same_as_bytes(rows, "tiny_cnn", [2], "FP32 binary [C,H,W]")

# -- UINT8 through tiny_u8: the pixels themselves
U8 = infer_path("tiny_u8")
rows = expect_ok(http(addrs[0], tensor_json("UINT8", [raw8[3], raw8[4]], [2, 3, 32, 32], True),
                      U8), 2, "UINT8 JSON nested")
same_as_bytes(rows, "tiny_u8", [0, 1], "UINT8 JSON nested")
rows = expect_ok(http(addrs[1], tensor_json("UINT8", [raw8[4]], [1, 3, 32, 32], False), U8), 1,
                 "UINT8 JSON flat")
same_as_bytes(rows, "tiny_u8", [1], "UINT8 JSON flat")
body, hdrs = tensor_binary("UINT8", [raw8[4], raw8[3]], [2, 3, 32, 32])
rows = expect_ok(http(addrs[0], body, U8, hdrs), 2, "UINT8 binary")
same_as_bytes(rows, "tiny_u8", [1, 0], "UINT8 binary")
# and the same values as FP32
rows = expect_ok(http(addrs[0], tensor_json("FP32", [raw8[3]], [3, 32, 32], False), U8), 1,
                 "FP32 of pixels")
same_as_bytes(rows, "tiny_u8", [0], "FP32 of pixels")

# -- errors: each a 400 whose message says what is wrong
def bad(got, want, what):
    global checks
    code, doc = got
    assert code == 400, "%s: status %d, expected 400: %r" % (what, code, doc)
    msg = doc.get("error", "")
    for w in want:
        assert w in msg, "%s: %r not in %r" % (what, w, msg)
    checks += 1

one = [prep[0]]
for dt in ("INT64", "FP16"):
    bad(http(addrs[0], tensor_json(dt, one, [1, 3, 32, 32], False), TINY),
        ["datatype %s is not taken" % dt, "FP32 or UINT8", "BYTES"], dt)
short = tensor_json("FP32", [prep[0][:-1]], [1, 3, 32, 32], False)
bad(http(addrs[0], short, TINY), ["holds 3072 values but data holds 3071"], "data short")
bad(http(addrs[0], tensor_json("FP32", [prep[0] + [0.0]], [1, 3, 32, 32], False), TINY),
    ["data holds more values than its shape's 3072"], "data long")
bad(http(addrs[0], tensor_json("FP32", [prep[0][:3 * 31 * 32]], [1, 3, 31, 32], False), TINY),
    ["[3, 31, 32]", "tiny_cnn takes [3, 32, 32]", "[N, 3, 32, 32], NCHW",
     "the request's shape is [1, 3, 31, 32]"], "shape against the model")
bad(http(addrs[1], tensor_json("UINT8", [raw8[3]], [1, 32, 32, 3], True), U8),
    ["[32, 32, 3]", "takes [3, 32, 32]"], "NHWC to an NCHW model")
bad(http(addrs[0], tensor_json("FP32", [prep[0]], [3, 1024, 1], False), TINY),
    ["[3, 1024, 1]", "takes [3, 32, 32]"], "same count, another shape")
bad(http(addrs[0], tensor_json("FP32", one, [1, 4294967296, 4294967296, 32], False), TINY),
    ["holds more than 4194304 values"], "a shape overflowing the count")
bad(http(addrs[0], tensor_json("UINT8", [[256] + raw8[3][1:]], [1, 3, 32, 32], False), U8),
    ["data value 0 is not a UINT8"], "UINT8 out of range")
body, hdrs = tensor_binary("FP32", one, [1, 3, 32, 32], size=3072 * 4 + 4)
bad(http(addrs[0], body, TINY, hdrs), ["binary_data_size is 12292 but 12288 bytes follow"],
    "binary_data_size beyond the body")
body, hdrs = tensor_binary("FP32", one, [1, 3, 32, 32], blob=b"\0" * (3072 * 4 - 2))
bad(http(addrs[0], body, TINY, hdrs), ["has 12286 bytes but shape [1, 3, 32, 32] of FP32 needs 12288"],
    "binary data against the shape")
body, hdrs = tensor_binary("UINT8", [raw8[3]], [1, 3, 32, 32], blob=bytes(raw8[3]) * 2)
bad(http(addrs[0], body, U8, hdrs), ["of UINT8 needs 3072"], "UINT8 binary too long")
nan = struct.pack("<3072f", *prep[0])[:40] + struct.pack("<f", float("nan")) + \
    struct.pack("<3072f", *prep[0])[44:]
body, hdrs = tensor_binary("FP32", one, [1, 3, 32, 32], blob=nan)
bad(http(addrs[0], body, TINY, hdrs), ["binary value 10 is not a finite number"], "a NaN")
mixed = json.loads(tensor_json("FP32", one, [1, 3, 32, 32], False))
mixed["inputs"].append({"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(images[0]).decode()]})
bad(http(addrs[0], json.dumps(mixed).encode(), TINY), ["exactly one input"], "tensor and images")

# -- still answering tensors after all of it
rows = expect_ok(http(addrs[1], tensor_json("FP32", [prep[2]], [1, 3, 32, 32], True), TINY), 1,
                 "FP32 after the errors")
same_as_bytes(rows, "tiny_cnn", [2], "FP32 after the errors")

# -- through an online job (scheduler.md, "Online jobs"): tensor and image
# requests at once, run in batches of up to 8 of one kind, each answered as
# when it ran alone
subprocess.run([os.environ["IDUNNO_BIN"], "-s", os.environ["NODE1"], "launch", "tiny_cnn", "8",
                "--online"], check=True, capture_output=True)
errors = []
def one_client(k):
    try:
        for r in range(4):
            i = (k + r) % 3
            if (k + r) % 2:
                body, hdrs = tensor_binary("FP32", [prep[i]], [1, 3, 32, 32])
                rows = expect_ok(http(addrs[k % 2], body, TINY, hdrs), 1, "online job FP32")
            else:
                body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(images[i]).decode()]}],
                                   "outputs": ASK_ALL}).encode()
                rows = expect_ok(http(addrs[k % 2], body, TINY), 1, "online job BYTES")
            same_as_bytes(rows, "tiny_cnn", [i], "online job, client %d request %d" % (k, r))
    except Exception as e:  # noqa: BLE001 -- reported below
        errors.append(repr(e))
threads = [threading.Thread(target=one_client, args=(k,)) for k in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
print("%d /v2 tensor checks passed" % checks)
PY
# the online job counted each of those 24 requests once
online_counted() { [ "$(cli node1 --json jobs | json "[j['queries_done'] for j in d['jobs'] if j['model'] == 'tiny_cnn'][0]")" = 24 ]; }
wait_until 20 online_counted || fail "the online job counted $(cli node1 --json jobs) for 24 requests"
echo ok
