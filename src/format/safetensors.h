/* safetensors reader: memory-maps the file and adds its tensors to a table without copying.
 * Accepts one file, or a directory holding model.safetensors or a sharded set described by
 * model.safetensors.index.json. Every structural problem is reported with the file and tensor. */
#ifndef TS_FORMAT_SAFETENSORS_H
#define TS_FORMAT_SAFETENSORS_H

#include <jansson.h>

#include "format/tensor_table.h"

/* Parses one safetensors image already in memory (used by the file reader and by the fuzzer). */
int ts_safetensors_parse(const uint8_t *data, size_t size, const char *source, int file_index,
                         ts_tensor_table *table, ts_error *err);
int ts_safetensors_load_file(const char *path, ts_tensor_table *table, ts_error *err);
/* Parses model.safetensors.index.json text and checks that every weight_map value is a plain shard file
 * name (no '/', not ".."); *weight_map receives that object (tensor name -> shard file; a new reference
 * the caller releases with json_decref). Pure, so that the fuzzer can call it. */
int ts_safetensors_index_parse(const char *text, size_t len, const char *source, json_t **weight_map,
                               ts_error *err);
/* model.safetensors, or the shards listed by model.safetensors.index.json, in dir. */
int ts_safetensors_load_dir(const char *dir, ts_tensor_table *table, ts_error *err);

#endif
