#include "tokenizer/model_tokenizer.h"

#include <string.h>

#include "base/files.h"
#include "format/gguf.h"
#include "format/gguf_model.h"

int ts_tokenizer_for_model(const char *path, const ts_vocab_spec *vocab, ts_tokenizer **out, ts_error *err) {
    *out = NULL;
    if (ts_is_directory(path)) return ts_tokenizer_load_dir(path, out, err);
    if (vocab && vocab->n_tokens > 0) return ts_tokenizer_from_spec(vocab, out, err);
    size_t n = strlen(path);
    if (!ts_file_exists(path))
        return ts_fail(err, "%s: not found (expected a model directory with tokenizer.json, or a .gguf file)", path);
    if (n < 5 || strcmp(path + n - 5, ".gguf") != 0)
        return ts_fail(err, "%s: not a model directory (with tokenizer.json) or a .gguf file", path);
    ts_gguf g;
    if (ts_gguf_open(path, &g, err) != 0) return -1;
    ts_vocab_spec spec;
    ts_vocab_spec_init(&spec);
    int rc = ts_gguf_read_vocab(&g, &spec, err);
    if (rc == 0 && spec.n_tokens == 0) rc = ts_fail(err, "%s: the file carries no vocabulary (tokenizer.ggml.tokens)", path);
    if (rc == 0) rc = ts_tokenizer_from_spec(&spec, out, err);
    ts_vocab_spec_free(&spec);
    ts_gguf_free(&g);
    return rc;
}
