#include "tokenizer/tokenizer_config.h"

#include <string.h>

const char *ts_tokenizer_config_token(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

const char *ts_tokenizer_config_chat_template(const json_t *cfg) {
    const json_t *tpl = json_object_get(cfg, "chat_template");
    const char *text = json_string_value(tpl);
    if (json_is_array(tpl)) {
        size_t i;
        const json_t *item;
        json_array_foreach(tpl, i, item) {
            const char *name = json_string_value(json_object_get(item, "name"));
            const char *t = json_string_value(json_object_get(item, "template"));
            if (t && (!text || (name && !strcmp(name, "default")))) text = t;
        }
    }
    return text;
}
