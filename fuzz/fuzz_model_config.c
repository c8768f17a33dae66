/* Fuzz target: config.json text through ts_model_config_parse (both Hugging Face spellings, every
 * architecture). An accepted configuration must also pass ts_model_config_validate and answer
 * ts_model_config_layer_is_moe for every layer without reading outside its tables. */
/* fuzz-max-len: 16384 */
/* fuzz-dict: json.dict */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/model_config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    /* The parser takes NUL-terminated text, as ts_model_config_load hands it over. */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    ts_model_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        free(text);
        return 0;
    }
    ts_error err = {{0}};
    int rc = ts_model_config_parse(text, "fuzz/config.json", cfg, &err);
    fuzz_check("ts_model_config_parse", rc, &err);
    if (rc == 0) {
        if (ts_model_config_validate(cfg, "fuzz/config.json", &err) != 0) abort();
        volatile int moe = 0;
        for (int l = 0; l < cfg->num_layers; l++) moe += ts_model_config_layer_is_moe(cfg, l);
        (void)moe;
        (void)ts_arch_name(cfg->arch);
    }
    free(cfg);
    free(text);
    return 0;
}
