"""The distinct GGUF types of a file's matrices (2-D tensors) as gguf-py reads them, sorted and space-separated,
for the quantize tests' cross-read; prints nothing, and says why on stderr, where gguf-py is not installed."""
import sys

try:
    import gguf
except ImportError:
    print("gguf-py not installed: the file is not cross-read", file=sys.stderr)
    sys.exit(0)

reader = gguf.GGUFReader(sys.argv[1])
print(" ".join(sorted({t.tensor_type.name for t in reader.tensors if len(t.shape) == 2})))
