/* Reading a checkpoint (a Hugging Face directory or a GGUF file) into a configuration and a table of
 * named tensors, without binding anything to a device. */
#include "model/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/files.h"
#include "format/gguf_model.h"
#include "format/safetensors.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int ts_checkpoint_is_gguf(const char *path) { return ends_with(path, ".gguf") && !ts_is_directory(path); }

/* generation_config.json may name more end-of-sequence tokens than config.json (Qwen's chat models end
 * turns with <|im_end|> as well as <|endoftext|>); both lists count. */
static int merge_generation_config(ts_model_config *c, const char *dir, ts_error *err) {
    char path[4096];
    if (ts_path_join(path, sizeof path, dir, "generation_config.json") != 0 || !ts_file_exists(path)) return 0;
    ts_generation_config g;
    if (ts_generation_config_load(path, &g, err) != 0) return -1;
    for (int i = 0; i < g.num_eos; i++) {
        int seen = 0;
        for (int k = 0; k < c->num_eos; k++) seen |= c->eos_token_ids[k] == g.eos_token_ids[i];
        if (seen || c->num_eos == TS_MAX_EOS) continue;
        if (g.eos_token_ids[i] < 0 || g.eos_token_ids[i] >= c->vocab_size)
            return ts_fail(err, "%s: eos token %d is outside the vocabulary (%d)", path, g.eos_token_ids[i], c->vocab_size);
        c->eos_token_ids[c->num_eos++] = g.eos_token_ids[i];
    }
    return 0;
}

int ts_checkpoint_read(const char *path, ts_model_config *cfg_out, ts_tensor_table *table, ts_vocab_spec *vocab,
                       ts_error *err) {
    if (ts_is_directory(path)) {
        char cfg[4096];
        if (ts_path_join(cfg, sizeof cfg, path, "config.json") != 0) return ts_fail(err, "%s: path too long", path);
        if (!ts_file_exists(cfg)) return ts_fail(err, "%s: no config.json in this directory (expected a Hugging Face model directory or a .gguf file)", path);
        if (ts_model_config_load(cfg, cfg_out, err) != 0) return -1;
        if (merge_generation_config(cfg_out, path, err) != 0) return -1;
        return ts_safetensors_load_dir(path, table, err);
    }
    if (ts_checkpoint_is_gguf(path)) return ts_gguf_load_model(path, cfg_out, table, vocab, err);
    if (ends_with(path, ".safetensors"))
        return ts_fail(err, "%s: pass the model directory (holding config.json), not the safetensors file", path);
    if (!ts_file_exists(path)) return ts_fail(err, "%s: no such file or directory", path);
    return ts_fail(err, "%s: not a model directory or a .gguf file", path);
}

