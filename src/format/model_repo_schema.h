/* The schema of Triton's ModelConfig (model_config.proto, package "inference") as text-format
 * descriptors: every message, field and enum value Triton accepts, so that a valid Triton
 * configuration passes even where tessera ignores a field, and a misspelt field is an error naming
 * the field and its message type, as Triton reports it. */
#ifndef TS_FORMAT_MODEL_REPO_SCHEMA_H
#define TS_FORMAT_MODEL_REPO_SCHEMA_H

#include "format/textproto.h"

extern const ts_tp_message_desc ts_triton_model_config_desc; /* inference.ModelConfig */
extern const ts_tp_enum_desc ts_triton_data_type_enum;       /* inference.DataType */
extern const ts_tp_enum_desc ts_triton_instance_kind_enum;   /* inference.ModelInstanceGroup.Kind */

#endif
