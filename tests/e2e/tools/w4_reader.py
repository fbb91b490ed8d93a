#!/usr/bin/env python3
"""An independent reader of 4-bit checkpoints, written from the formats' own sources (AutoAWQ
awq/utils/packing_utils.py: AWQ_ORDER/reverse order; compressed-tensors pack_quantized: +8 offset,
little-endian nibbles) with only the standard library. Usage:

  w4_reader.py check AWQ_DIR CT_DIR ORIG_DIR TOL_STEPS
      every linear of the AWQ folder and of the CT folder dequantizes to the same floats; with
      ORIG_DIR (an unscaled round-to-nearest run) every weight is within TOL_STEPS quantization
      steps of the original bf16 weight. Prints one line per check; exit 1 on a mismatch.
"""
import json, struct, sys

def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], raw[base + a:base + b])
    return out

def f16(b):
    return list(struct.unpack("<%de" % (len(b) // 2), b))

def bf16(b):
    return [struct.unpack("<f", b"\0\0" + b[i:i + 2])[0] for i in range(0, len(b), 2)]

def i32(b):
    return list(struct.unpack("<%dI" % (len(b) // 4), b))

AWQ_REV = [0, 4, 1, 5, 2, 6, 3, 7]

def awq_linear(ts, prefix, g):
    _, (inn, ow), qw = ts[prefix + ".qweight"]
    _, _, qz = ts[prefix + ".qzeros"]
    _, (ng, out), sc = ts[prefix + ".scales"]
    qw, qz, sc = i32(qw), i32(qz), f16(sc)
    W = [[0.0] * inn for _ in range(out)]
    for i in range(inn):
        gi = i // g
        for o in range(out):
            sh = 4 * AWQ_REV[o % 8]
            q = (qw[i * ow + o // 8] >> sh) & 15
            z = (qz[gi * ow + o // 8] >> sh) & 15
            W[o][i] = (q - z) * sc[gi * out + o]
    return W, [[sc[(i // g) * out + o] for i in range(inn)] for o in range(out)]

def ct_linear(ts, prefix, g):
    _, (out, iw), wp = ts[prefix + ".weight_packed"]
    _, (orows, ng), zp = ts[prefix + ".weight_zero_point"]
    _, _, sc = ts[prefix + ".weight_scale"]
    _, _, shape = ts[prefix + ".weight_shape"]
    o_, in_ = struct.unpack("<2q", shape)
    wp, zp, sc = i32(wp), i32(zp), f16(sc)
    W = [[0.0] * in_ for _ in range(out)]
    for o in range(out):
        for i in range(in_):
            gi = i // g
            q = ((wp[o * iw + i // 8] >> (4 * (i % 8))) & 15) - 8
            z = ((zp[(o // 8) * ng + gi] >> (4 * (o % 8))) & 15) - 8
            W[o][i] = (q - z) * sc[o * ng + gi]
    assert (o_, in_) == (out, in_)
    return W

def main():
    _, cmd, awq_dir, ct_dir, orig_dir, tol = sys.argv
    a, c = load(awq_dir + "/model.safetensors"), load(ct_dir + "/model.safetensors")
    g = json.load(open(awq_dir + "/config.json"))["quantization_config"]["group_size"]
    prefixes = sorted(k[:-8] for k in a if k.endswith(".qweight"))
    bad = 0
    for p in prefixes:
        Wa, S = awq_linear(a, p, g)
        Wc = ct_linear(c, p, g)
        same = Wa == Wc
        print(("PASS" if same else "FAIL") + " w4-awq-equals-ct " + p)
        bad += not same
    if orig_dir != "-":
        o = load_orig(orig_dir)
        for p in prefixes:
            Wa, S = awq_linear(a, p, g)
            dt, shape, b = o[p + ".weight"]
            vals = bf16(b) if dt == "BF16" else f16(b) if dt == "F16" else list(struct.unpack("<%df" % (len(b) // 4), b))
            worst = max(abs(Wa[r][i] - vals[r * shape[1] + i]) / S[r][i] for r in range(shape[0]) for i in range(shape[1]))
            ok = worst <= float(tol)
            print(("PASS" if ok else "FAIL") + " w4-rtn-within-%s-steps %s (worst %.3f)" % (tol, p, worst))
            bad += not ok
    sys.exit(1 if bad else 0)

def load_orig(d):
    import os
    ts = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            ts.update(load(os.path.join(d, f)))
    return ts

main()
