/* Fuzz target: a Triton config.pbtxt through ts_triton_config_parse (text format, ModelConfig schema
 * check, the fields and parameters tessera honours), then the accessors over the result. */
/* fuzz-max-len: 65536 */
/* fuzz-dict: textproto.dict */
#include <stdint.h>
#include <stdlib.h>

#include "format/model_repo_config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    ts_triton_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return 0;
    ts_error err = {{0}};
    int rc = ts_triton_config_parse((const char *)data, size, "fuzz/m/config.pbtxt", cfg, &err);
    fuzz_check("ts_triton_config_parse", rc, &err);
    if (rc == 0) {
        (void)ts_triton_kind_name(ts_triton_config_kind(cfg));
        for (int i = 0; i < cfg->num_parameters; i++) {
            const ts_triton_param *p = ts_triton_config_param(cfg, cfg->parameters[i].key);
            if (!p) abort();
            uint64_t bytes;
            (void)ts_parse_byte_size(p->value, &bytes);
            (void)ts_parse_switch(p->value);
        }
    }
    free(cfg);
    return 0;
}
