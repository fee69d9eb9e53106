#!/usr/bin/python3
"""Writes the ONNX models IDunno serves, with seeded weights.

Pretrained weights cannot be had here, so the models have the real torchvision
architectures (same layers, shapes and parameter counts, printed and checked)
and deterministic random weights: He-initialised convolutions and identity
BatchNorm statistics, which keep activations near unit scale through the whole
depth. Re-running writes byte-identical files.

  tools/gen_models.py [--out models] [--only tiny_cnn,resnet50,inception_v3]

Each model carries its preprocessing in ONNX metadata (idunno.input_size,
idunno.resize, idunno.mean, idunno.std) and in a sidecar NAME.json. The tiny CNN
also gets NAME.reference.bin: a seeded input tensor and the logits of a numpy
forward pass, so tests can check the C pipeline against an independent
computation.

Needs only numpy and onnx (Debian: python3-numpy, python3-onnx); no PyTorch.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
OPSET = 13


class Graph:
    """Builds an ONNX graph layer by layer, counting trainable parameters the
    way torchvision does (conv/fc weights and biases, BN weight and bias; not
    the running statistics)."""

    def __init__(self, seed):
        self.rng = np.random.RandomState(seed)
        self.nodes, self.inits = [], []
        self.params = 0
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, arr, trainable):
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        if trainable:
            self.params += arr.size
        return name

    def conv(self, x, cin, cout, k, stride=1, pad=0, bias=False):
        kh, kw = (k, k) if isinstance(k, int) else k
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        n = self.name("conv")
        fan_in = cin * kh * kw
        w = self.rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(2.0 / fan_in)
        inputs = [x, self.const(n + ".w", w, True)]
        if bias:
            inputs.append(self.const(n + ".b", np.zeros(cout), True))
        self.nodes.append(helper.make_node("Conv", inputs, [n], kernel_shape=[kh, kw],
                                           strides=[stride, stride], pads=[ph, pw, ph, pw]))
        return n

    def bn(self, x, c, eps=1e-5):
        n = self.name("bn")
        ins = [x, self.const(n + ".gamma", np.ones(c), True), self.const(n + ".beta", np.zeros(c), True),
               self.const(n + ".mean", np.zeros(c), False), self.const(n + ".var", np.ones(c), False)]
        self.nodes.append(helper.make_node("BatchNormalization", ins, [n], epsilon=eps))
        return n

    def op(self, kind, inputs, **attrs):
        n = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [n], **attrs))
        return n

    def relu(self, x):
        return self.op("Relu", [x])

    def maxpool(self, x, k, s, p=0):
        return self.op("MaxPool", [x], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)

    def avgpool(self, x, k, s, p=0):
        return self.op("AveragePool", [x], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                       count_include_pad=1)

    def fc(self, x, cin, cout):
        n = self.name("fc")
        flat = self.op("Flatten", [x], axis=1)
        w = self.rng.standard_normal((cout, cin)) * np.sqrt(1.0 / cin)
        return self.op("Gemm", [flat, self.const(n + ".w", w, True), self.const(n + ".b", np.zeros(cout), True)],
                       transB=1)

    def model(self, out, classes, size, name, meta, channels=3, declared=None):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])
        outp = helper.make_tensor_value_info("logits", TensorProto.FLOAT, declared or ["N", classes])
        self.nodes.append(helper.make_node("Identity", [out], ["logits"]))
        g = helper.make_graph(self.nodes, name, [inp], [outp], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="idunno-gen-models", producer_version="1")
        m.ir_version = 8
        for k, v in meta.items():
            e = m.metadata_props.add()
            e.key, e.value = k, v
        onnx.checker.check_model(m)
        return m


# ---- ResNet50 (torchvision resnet50, v1.5: stride on the 3x3 conv) -------------

def resnet50(seed=50):
    g = Graph(seed)
    x = g.relu(g.bn(g.conv("input", 3, 64, 7, 2, 3), 64))
    x = g.maxpool(x, 3, 2, 1)
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            y = g.relu(g.bn(g.conv(x, cin, width, 1), width))
            y = g.relu(g.bn(g.conv(y, width, width, 3, s, 1), width))
            y = g.bn(g.conv(y, width, width * 4, 1), width * 4)
            short = x
            if b == 0:
                short = g.bn(g.conv(x, cin, width * 4, 1, s), width * 4)
            x = g.relu(g.op("Add", [y, short]))
            cin = width * 4
    x = g.op("GlobalAveragePool", [x])
    x = g.fc(x, 2048, 1000)
    return g, x


# ---- InceptionV3 (torchvision inception_v3, aux_logits=False) ----------------

def basic(g, x, cin, cout, k, s=1, p=0):
    return g.relu(g.bn(g.conv(x, cin, cout, k, s, p), cout, eps=1e-3))


def inception_a(g, x, cin, pool):
    b1 = basic(g, x, cin, 64, 1)
    b5 = basic(g, basic(g, x, cin, 48, 1), 48, 64, 5, p=2)
    b3 = basic(g, basic(g, basic(g, x, cin, 64, 1), 64, 96, 3, p=1), 96, 96, 3, p=1)
    bp = basic(g, g.avgpool(x, 3, 1, 1), cin, pool, 1)
    return g.op("Concat", [b1, b5, b3, bp], axis=1), 64 + 64 + 96 + pool


def inception_b(g, x, cin):
    b3 = basic(g, x, cin, 384, 3, s=2)
    bd = basic(g, basic(g, basic(g, x, cin, 64, 1), 64, 96, 3, p=1), 96, 96, 3, s=2)
    bp = g.maxpool(x, 3, 2)
    return g.op("Concat", [b3, bd, bp], axis=1), 384 + 96 + cin


def inception_c(g, x, cin, c7):
    b1 = basic(g, x, cin, 192, 1)
    b7 = basic(g, x, cin, c7, 1)
    b7 = basic(g, b7, c7, c7, (1, 7), p=(0, 3))
    b7 = basic(g, b7, c7, 192, (7, 1), p=(3, 0))
    bd = basic(g, x, cin, c7, 1)
    bd = basic(g, bd, c7, c7, (7, 1), p=(3, 0))
    bd = basic(g, bd, c7, c7, (1, 7), p=(0, 3))
    bd = basic(g, bd, c7, c7, (7, 1), p=(3, 0))
    bd = basic(g, bd, c7, 192, (1, 7), p=(0, 3))
    bp = basic(g, g.avgpool(x, 3, 1, 1), cin, 192, 1)
    return g.op("Concat", [b1, b7, bd, bp], axis=1), 768


def inception_d(g, x, cin):
    b3 = basic(g, basic(g, x, cin, 192, 1), 192, 320, 3, s=2)
    b7 = basic(g, x, cin, 192, 1)
    b7 = basic(g, b7, 192, 192, (1, 7), p=(0, 3))
    b7 = basic(g, b7, 192, 192, (7, 1), p=(3, 0))
    b7 = basic(g, b7, 192, 192, 3, s=2)
    bp = g.maxpool(x, 3, 2)
    return g.op("Concat", [b3, b7, bp], axis=1), 320 + 192 + cin


def inception_e(g, x, cin):
    b1 = basic(g, x, cin, 320, 1)
    b3 = basic(g, x, cin, 384, 1)
    b3 = g.op("Concat", [basic(g, b3, 384, 384, (1, 3), p=(0, 1)),
                         basic(g, b3, 384, 384, (3, 1), p=(1, 0))], axis=1)
    bd = basic(g, basic(g, x, cin, 448, 1), 448, 384, 3, p=1)
    bd = g.op("Concat", [basic(g, bd, 384, 384, (1, 3), p=(0, 1)),
                         basic(g, bd, 384, 384, (3, 1), p=(1, 0))], axis=1)
    bp = basic(g, g.avgpool(x, 3, 1, 1), cin, 192, 1)
    return g.op("Concat", [b1, b3, bd, bp], axis=1), 2048


def inception_v3(seed=3):
    g = Graph(seed)
    x = basic(g, "input", 3, 32, 3, s=2)
    x = basic(g, x, 32, 32, 3)
    x = basic(g, x, 32, 64, 3, p=1)
    x = g.maxpool(x, 3, 2)
    x = basic(g, x, 64, 80, 1)
    x = basic(g, x, 80, 192, 3)
    x = g.maxpool(x, 3, 2)
    x, c = inception_a(g, x, 192, 32)
    x, c = inception_a(g, x, c, 64)
    x, c = inception_a(g, x, c, 64)
    x, c = inception_b(g, x, c)
    for c7 in (128, 160, 160, 192):
        x, c = inception_c(g, x, c, c7)
    x, c = inception_d(g, x, c)
    x, c = inception_e(g, x, c)
    x, c = inception_e(g, x, c)
    x = g.op("GlobalAveragePool", [x])
    x = g.fc(x, 2048, 1000)
    return g, x


# ---- the tiny CNN for tests, with an independent numpy forward pass --------------

def tiny_cnn(seed=7, channels=3):
    g = Graph(seed)
    x = g.relu(g.conv("input", channels, 8, 3, 1, 1, bias=True))
    x = g.maxpool(x, 2, 2)
    x = g.relu(g.conv(x, 8, 16, 3, 1, 1, bias=True))
    x = g.op("GlobalAveragePool", [x])
    x = g.fc(x, 16, 10)
    # Non-zero biases, so the check also covers them.
    for t in g.inits:
        if t.name.endswith(".b"):
            arr = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(
                (g.rng.standard_normal(arr.shape) * 0.1).astype(np.float32), t.name))
    return g, x


def opaque_reshape(g, x, dims):
    """Reshapes x to dims (-1 allowed) through a shape that depends on the
    data (it adds 0 * sum(x)), so that shape inference cannot know the
    output's dimensions and keeps whatever the graph declares: the way a
    model gets past a load-time check with a declared shape that is a lie."""
    def int_const(name, arr):
        g.inits.append(numpy_helper.from_array(np.array(arr, dtype=np.int64), name))
        return name
    zero = g.op("Mul", [g.op("ReduceSum", [x], keepdims=0), g.const("opaque.zero", np.array(0.0), False)])
    zero = g.op("Reshape", [g.op("Cast", [zero], to=TensorProto.INT64), int_const("opaque.one", [1])])
    batch = g.op("Slice", [g.op("Shape", [x]), int_const("opaque.s0", [0]), int_const("opaque.s1", [1])])
    rest = g.op("Add", [int_const("opaque.rest", dims[1:]), zero])
    return g.op("Reshape", [x, g.op("Concat", [batch, rest], axis=0)])


def tiny_opaque(dims):
    """The tiny CNN's [N, 10] logits behind an opaque reshape to dims."""
    def build():
        g, x = tiny_cnn()
        return g, opaque_reshape(g, x, dims)
    return build


def np_conv(x, w, b, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, o, h, wd), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + h, j:j + wd]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def tiny_reference(g, batch=2, size=32, seed=11):
    t = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in g.inits}
    names = sorted(t)
    conv = [n[:-2] for n in names if n.startswith("conv") and n.endswith(".w")]
    conv.sort(key=lambda s: int(s.split("_")[1]))
    fc = [n[:-2] for n in names if n.startswith("fc") and n.endswith(".w")][0]
    x = np.random.RandomState(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    y = np.maximum(np_conv(x.astype(np.float64), t[conv[0] + ".w"], t[conv[0] + ".b"], 1), 0)
    y = y.reshape(batch, 8, size // 2, 2, size // 2, 2).max(axis=(3, 5))
    y = np.maximum(np_conv(y, t[conv[1] + ".w"], t[conv[1] + ".b"], 1), 0)
    y = y.mean(axis=(2, 3))
    logits = y @ t[fc + ".w"].T + t[fc + ".b"]
    return x, logits.astype(np.float32)


def tiny_dyn_softmax(seed=15):
    """A model as users bring them, not as this tool writes them: input `x`
    of shape [N, 3, H, W] with H and W dynamic, 2 classes, ending in a
    Softmax, no idunno.* metadata. Its card must come from the user."""
    g = Graph(seed)
    x = g.relu(g.conv("x", 3, 4, 3, 1, 1, bias=True))
    x = g.op("GlobalAveragePool", [x])
    x = g.fc(x, 4, 2)
    for t in g.inits:
        if t.name.endswith(".b"):
            arr = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(
                (g.rng.standard_normal(arr.shape) * 0.5).astype(np.float32), t.name))
    g.nodes.append(helper.make_node("Softmax", [x], ["probs"], axis=1))
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, -1, -1])
    outp = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [-1, 2])
    graph = helper.make_graph(g.nodes, "tiny_dyn_softmax", [inp], [outp], g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="idunno-gen-models", producer_version="1")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


MODELS = {
    "tiny_cnn": dict(build=tiny_cnn, size=32, resize=32, classes=10, params=None,
                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]),
    # A model IDunno must refuse: one input channel, not RGB (for the tests).
    "tiny_gray": dict(build=lambda: tiny_cnn(seed=9, channels=1), size=32, resize=32, classes=10,
                      params=None, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], channels=1),
    # Models whose declared output lies about what they return, for the tests
    # (tests/unit/test_infer.c): IDunno must refuse them or fail their runs
    # cleanly, never copy what was declared. They compute the tiny CNN's 10
    # logits.
    "bad_huge_classes": dict(build=tiny_opaque(["N", -1]), size=32, resize=32, classes=10, params=None,
                             mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                             declared=["N", 4294967306]),
    "bad_declares_more": dict(build=tiny_opaque(["N", -1]), size=32, resize=32, classes=10, params=None,
                              mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], declared=["N", 1000]),
    "bad_declares_fewer": dict(build=tiny_opaque(["N", -1]), size=32, resize=32, classes=10, params=None,
                               mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], declared=["N", 4]),
    "bad_rank3_declared": dict(build=tiny_opaque(["N", 10, 1]), size=32, resize=32, classes=10, params=None,
                               mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], declared=["N", 10, 1]),
    "bad_rank3_returned": dict(build=tiny_opaque(["N", 10, 1]), size=32, resize=32, classes=10, params=None,
                               mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], declared=["N", 10]),
    # The tiny CNN with a malformed mean in its metadata: refused naming the
    # field, never run with a stand-in mean.
    "bad_mean": dict(build=tiny_cnn, size=32, resize=32, classes=10, params=None,
                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                     meta={"idunno.mean": "0.5;0.5;0.5"}),
    # The tiny CNN asking the inference process to crash on its first run
    # (honoured only by a node started with --test-hooks): the cluster test
    # of a model that brings its process down.
    "bad_crash": dict(build=tiny_cnn, size=32, resize=32, classes=10, params=None,
                      mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                      meta={"idunno.test.crash": "abort"}),
    # The same asking its process to hang on its first run: the cluster test
    # of the run deadline (idunnod --infer-timeout).
    "bad_hang": dict(build=tiny_cnn, size=32, resize=32, classes=10, params=None,
                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25],
                     meta={"idunno.test.crash": "hang"}),
    # The issue-15 case for the model card's tests (written by its own
    # builder: no metadata, no sidecar).
    "tiny_dyn_softmax": dict(model=tiny_dyn_softmax),
    "resnet50": dict(build=resnet50, size=224, resize=256, classes=1000, params=25557032,
                     mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "inception_v3": dict(build=inception_v3, size=299, resize=342, classes=1000, params=23834568,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


def write_if_changed(path, data):
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--only", default=",".join(MODELS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.only.split(","):
        spec = MODELS[name]
        if "model" in spec:
            data = spec["model"]().SerializeToString()
            path = os.path.join(a.out, name + ".onnx")
            changed = write_if_changed(path, data)
            print(f"{name}: {len(data) / 1e3:.1f} kB, {'written' if changed else 'unchanged'} {path}")
            continue
        g, out = spec["build"]()
        meta = {"idunno.name": name, "idunno.input_size": str(spec["size"]),
                "idunno.resize": str(spec["resize"]),
                "idunno.mean": ",".join(f"{v:g}" for v in spec["mean"]),
                "idunno.std": ",".join(f"{v:g}" for v in spec["std"]),
                "idunno.classes": str(spec["classes"])}
        meta.update(spec.get("meta", {}))
        m = g.model(out, spec["classes"], spec["size"], name, meta, spec.get("channels", 3),
                    spec.get("declared"))
        if spec["params"] is not None and g.params != spec["params"]:
            sys.exit(f"{name}: {g.params} parameters, torchvision has {spec['params']}")
        data = m.SerializeToString()
        path = os.path.join(a.out, name + ".onnx")
        changed = write_if_changed(path, data)
        side = dict(name=name, input_size=spec["size"], resize=spec["resize"], mean=spec["mean"],
                    std=spec["std"], classes=spec["classes"], parameters=g.params, layout="NCHW",
                    input="input", output="logits")
        write_if_changed(os.path.join(a.out, name + ".json"), (json.dumps(side, indent=2) + "\n").encode())
        if name == "tiny_cnn":
            x, logits = tiny_reference(g)
            blob = struct.pack("<4I", x.shape[0], x.shape[2], x.shape[3], logits.shape[1])
            blob += x.astype("<f4").tobytes() + logits.astype("<f4").tobytes()
            write_if_changed(os.path.join(a.out, name + ".reference.bin"), blob)
        print(f"{name}: {g.params:,} parameters, {len(data) / 1e6:.1f} MB, "
              f"{'written' if changed else 'unchanged'} {path}")


if __name__ == "__main__":
    main()
