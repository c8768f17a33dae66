"""tessera's GGUF reader and writer against gguf-py (PyPI `gguf`, llama.cpp's own Python package):
 - every shared GGUF file: every metadata key (type and value) and every tensor (name, ggml type,
   dimensions, absolute data offset, size) as our reader sees them (format_test_gguf --dump) equals
   what gguf.GGUFReader sees;
 - a file our writer produced with every metadata type and several tensor types reads back in
   GGUFReader with the values the writer was given, and our dump of it matches GGUFReader;
 - a file gguf.GGUFWriter produced with every metadata type reads identically in our reader.

Skips (exit 0 with a message) when `gguf` or `numpy` is not installed."""
# ctest-cost: 36
import glob
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
except ImportError:
    print("SKIP: the PyPI packages 'gguf' and 'numpy' are needed (pip install gguf numpy)")
    sys.exit(0)

SHARED = os.environ.get("TESSERA_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
BUILD = os.environ.get("TESSERA_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "format_test_gguf")

TYPE_NAMES = {
    gguf.GGUFValueType.UINT8: "u8", gguf.GGUFValueType.INT8: "i8", gguf.GGUFValueType.UINT16: "u16",
    gguf.GGUFValueType.INT16: "i16", gguf.GGUFValueType.UINT32: "u32", gguf.GGUFValueType.INT32: "i32",
    gguf.GGUFValueType.FLOAT32: "f32", gguf.GGUFValueType.BOOL: "bool", gguf.GGUFValueType.STRING: "string",
    gguf.GGUFValueType.ARRAY: "array", gguf.GGUFValueType.UINT64: "u64", gguf.GGUFValueType.INT64: "i64",
    gguf.GGUFValueType.FLOAT64: "f64",
}

failures = []
compared = {"keys": 0, "tensors": 0}


def check(cond, msg):
    if not cond:
        failures.append(msg)


def dump(path):
    out = subprocess.run([HELPER, "--dump", path], capture_output=True, check=True)
    return json.loads(out.stdout)


def ours_scalar(v):
    if isinstance(v, dict) and "u64" in v:
        return int(v["u64"])
    return v


def same_scalar(kind, ours, theirs):
    ours = ours_scalar(ours)
    if kind == "f32":
        return np.float32(ours) == np.float32(theirs) or (math.isnan(ours) and math.isnan(theirs))
    if kind == "f64":
        return float(ours) == float(theirs)
    if kind == "bool":
        return bool(ours) == bool(theirs)
    if kind == "string":
        return ours == theirs
    return int(ours) == int(theirs)


def compare_file(path):
    ours = dump(path)
    r = gguf.GGUFReader(path)
    name = os.path.basename(path)
    check(ours["alignment"] == r.alignment, f"{name}: alignment {ours['alignment']} vs {r.alignment}")
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    check(sorted(keys) == sorted(ours["kv"].keys()), f"{name}: key sets differ")
    for k in keys:
        f = r.fields[k]
        o = ours["kv"].get(k)
        compared["keys"] += 1
        if o is None:
            continue
        kind = TYPE_NAMES[f.types[0]]
        check(o["type"] == kind, f"{name}: {k}: type {o['type']} vs {kind}")
        if kind != "array":
            check(same_scalar(kind, o["value"], f.contents()), f"{name}: {k}: {o['value']!r} vs {f.contents()!r}")
            continue
        if len(f.types) == 1:  # an empty array: gguf-py records no element type
            check(o["value"]["values"] == [], f"{name}: {k}: expected an empty array")
            continue
        if len(f.types) > 2 or f.types[1] == gguf.GGUFValueType.ARRAY:
            continue  # nested arrays: compared in the sample tests by value
        ek = TYPE_NAMES[f.types[1]]
        check(o["value"]["elem"] == ek, f"{name}: {k}: element type {o['value']['elem']} vs {ek}")
        theirs = f.contents()
        mine = o["value"]["values"]
        check(len(mine) == len(theirs), f"{name}: {k}: {len(mine)} vs {len(theirs)} elements")
        bad = [i for i, (a, b) in enumerate(zip(mine, theirs)) if not same_scalar(ek, a, b)]
        check(not bad, f"{name}: {k}: {len(bad)} elements differ, first at {bad[:1]}")
    check(len(ours["tensors"]) == len(r.tensors), f"{name}: tensor counts differ")
    for mine, t in zip(ours["tensors"], r.tensors):
        compared["tensors"] += 1
        check(mine["name"] == t.name, f"{name}: tensor {t.name}: named {mine['name']}")
        check(mine["type"] == int(t.tensor_type), f"{name}: {t.name}: type {mine['type']} vs {int(t.tensor_type)}")
        check(mine["ne"] == [int(x) for x in t.shape], f"{name}: {t.name}: ne {mine['ne']} vs {list(t.shape)}")
        check(mine["offset"] == int(t.data_offset), f"{name}: {t.name}: offset {mine['offset']} vs {t.data_offset}")
        check(mine["nbytes"] == int(t.n_bytes), f"{name}: {t.name}: {mine['nbytes']} bytes vs {t.n_bytes}")
    return ours, r


def test_shared_files():
    files = sorted(glob.glob(os.path.join(SHARED, "testdata/gguf/*.gguf")))
    check(len(files) == 3, f"expected 3 shared GGUF files, found {len(files)}")
    for path in files:
        compare_file(path)


def test_our_sample(tmp):
    path = os.path.join(tmp, "sample.gguf")
    subprocess.run([HELPER, "--write-sample", path], check=True)
    ours, r = compare_file(path)
    f = r.fields
    # the values write_sample() in test_gguf.c was given
    expect = {
        "t.u8": 200, "t.i8": -100, "t.u16": 65000, "t.i16": -32000, "t.u32": 4000000000, "t.i32": -2000000000,
        "t.bool": True, "t.string": "héllo\nwörld", "t.u64": 18000000000000000000,
        "t.i64": -9000000000000000000, "t.f64": 2.718281828459045, "general.alignment": 64,
    }
    for k, v in expect.items():
        check(f[k].contents() == v, f"sample: {k}: {f[k].contents()!r} vs {v!r}")
    check(np.float32(f["t.f32"].contents()) == np.float32(0.1), "sample: t.f32")
    check(f["t.strings"].contents() == ["alpha", "", "γλώσσα", "tab\there"], "sample: t.strings")
    check(f["t.i32s"].contents() == [-7, 0, 2147483647, -2147483648], "sample: t.i32s")
    check([np.float32(x) for x in f["t.f32s"].contents()] == [np.float32(x) for x in (1.5, -0.0, 3.25e-20, 65504.0)],
          "sample: t.f32s")
    check(f["t.bools"].contents() == [True, False, True], "sample: t.bools")
    check(f["t.u64s"].contents() == [0, 18446744073709551615], "sample: t.u64s")
    check(f["t.empty"].contents() == [], "sample: t.empty")
    nested = ours["kv"]["t.nested"]["value"]
    check(nested["elem"] == "array" and [x["values"] for x in nested["values"]] == [[1, 2], [3]],
          f"sample: our t.nested {nested}")
    check(f["t.nested"].types[:2] == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.ARRAY], "sample: t.nested types")
    tensors = {t.name: t for t in r.tensors}
    want = {"t.f32": (0, [5, 3]), "t.f16": (1, [7]), "t.bf16": (30, [4, 3, 2]), "t.q8_0": (8, [64, 2]),
            "t.q4_k": (12, [256])}
    for n, (ty, ne) in want.items():
        check(int(tensors[n].tensor_type) == ty and [int(x) for x in tensors[n].shape] == ne, f"sample: tensor {n}")
    check(np.array_equal(tensors["t.f32"].data.reshape(-1), np.arange(15, dtype=np.float32) * 0.5 - 3),
          "sample: t.f32 data")
    deq = gguf.quants.dequantize(tensors["t.q8_0"].data, gguf.GGMLQuantizationType.Q8_0).reshape(-1)
    check(np.max(np.abs(deq - np.sin(np.arange(128, dtype=np.float32)))) < 0.01, "sample: t.q8_0 data")
    check(all(int(t.data_offset) % 64 == 0 for t in r.tensors), "sample: tensor data not 64-aligned")


def test_gguf_py_writer(tmp):
    path = os.path.join(tmp, "from-gguf-py.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("p.u8", 7)
    w.add_int8("p.i8", -7)
    w.add_uint16("p.u16", 700)
    w.add_int16("p.i16", -700)
    w.add_uint32("p.u32", 70000)
    w.add_int32("p.i32", -70000)
    w.add_float32("p.f32", 1.25)
    w.add_bool("p.bool", False)
    w.add_string("p.string", "ok")
    w.add_uint64("p.u64", 1 << 60)
    w.add_int64("p.i64", -(1 << 60))
    w.add_float64("p.f64", 1e-300)
    w.add_array("p.strs", ["a", "bc", ""])
    w.add_array("p.ints", [1, -2, 3])
    w.add_array("p.floats", [0.5, 0.25])
    w.add_array("p.nested", [[1, 2], [3, 4, 5]])
    w.add_tensor("x", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("y", np.ones(64, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours, _ = compare_file(path)
    nested = ours["kv"]["p.nested"]["value"]
    check([x["values"] for x in nested["values"]] == [[1, 2], [3, 4, 5]], f"gguf-py nested array read as {nested}")


def test_ggml_type_table():
    """Block sizes of every ggml type our reader knows equal gguf-py's table."""
    src = open(os.path.join(os.path.dirname(__file__), "../../src/format/gguf.c"), encoding="utf-8").read()
    import re
    ours = {int(m.group(1)): (m.group(2), int(m.group(3)), int(m.group(4)))
            for m in re.finditer(r'\[(\d+)\] = \{"(\w+)", (\d+), (\d+)\}', src)}
    for t, (bs, ts) in gguf.GGML_QUANT_SIZES.items():
        check(int(t) in ours, f"ggml type {t.name} ({int(t)}) missing from our table")
        if int(t) in ours:
            check(ours[int(t)][1:] == (bs, ts) and ours[int(t)][0] == t.name,
                  f"ggml type {t.name}: ours {ours[int(t)]} vs ({bs}, {ts})")


def main():
    if not os.path.exists(HELPER):
        print(f"FAIL: helper {HELPER} not built")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        test_shared_files()
        test_our_sample(tmp)
        test_gguf_py_writer(tmp)
        test_ggml_type_table()
    for f in failures[:50]:
        print("FAIL:", f)
    print(f"compared {compared['keys']} keys and {compared['tensors']} tensors; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
