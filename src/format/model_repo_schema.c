/* Descriptor tables for inference.ModelConfig, written leaves first so that every message is defined
 * before the fields that refer to it. Map fields appear as repeated <Name>Entry messages with key and
 * value fields, which is what the text format writes for them. */
#include "format/model_repo_schema.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define SCALAR(n, t) { n, t, 0, NULL, NULL, NULL }
#define REPEATED(n, t) { n, t, 1, NULL, NULL, NULL }
#define MESSAGE(n, m) { n, TS_TP_MESSAGE_T, 0, &(m), NULL, NULL }
#define REPEATED_MESSAGE(n, m) { n, TS_TP_MESSAGE_T, 1, &(m), NULL, NULL }
#define ENUM(n, e) { n, TS_TP_ENUM, 0, NULL, &(e), NULL }
#define ONEOF_SCALAR(n, t, o) { n, t, 0, NULL, NULL, o }
#define ONEOF_MESSAGE(n, m, o) { n, TS_TP_MESSAGE_T, 0, &(m), NULL, o }
#define DEFINE_MESSAGE(var, full_name, fields) \
    static const ts_tp_message_desc var = {full_name, fields, COUNT(fields)}
#define DEFINE_ENUM(var, full_name, names, numbers) \
    static const ts_tp_enum_desc var = {full_name, names, numbers, COUNT(names)}

/* ---- enums ---- */

static const char *const data_type_names[] = {"TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                                              "TYPE_UINT64",  "TYPE_INT8", "TYPE_INT16", "TYPE_INT32",  "TYPE_INT64",
                                              "TYPE_FP16",    "TYPE_FP32", "TYPE_FP64",  "TYPE_STRING", "TYPE_BF16"};
static const int data_type_numbers[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
const ts_tp_enum_desc ts_triton_data_type_enum = {"inference.DataType", data_type_names, data_type_numbers,
                                                  COUNT(data_type_names)};

static const char *const kind_names[] = {"KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"};
static const int kind_numbers[] = {0, 1, 2, 3};
const ts_tp_enum_desc ts_triton_instance_kind_enum = {"inference.ModelInstanceGroup.Kind", kind_names, kind_numbers,
                                                      COUNT(kind_names)};

static const char *const secondary_kind_names[] = {"KIND_NVDLA"};
static const int secondary_kind_numbers[] = {0};
DEFINE_ENUM(secondary_kind_enum, "inference.ModelInstanceGroup.SecondaryDevice.SecondaryDeviceKind",
            secondary_kind_names, secondary_kind_numbers);

static const char *const input_format_names[] = {"FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"};
static const int input_format_numbers[] = {0, 1, 2};
DEFINE_ENUM(input_format_enum, "inference.ModelInput.Format", input_format_names, input_format_numbers);

static const char *const batch_input_kind_names[] = {"BATCH_ELEMENT_COUNT",
                                                     "BATCH_ACCUMULATED_ELEMENT_COUNT",
                                                     "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
                                                     "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
                                                     "BATCH_ITEM_SHAPE",
                                                     "BATCH_ITEM_SHAPE_FLATTEN"};
static const int batch_input_kind_numbers[] = {0, 1, 2, 3, 4, 5};
DEFINE_ENUM(batch_input_kind_enum, "inference.BatchInput.Kind", batch_input_kind_names, batch_input_kind_numbers);

static const char *const batch_output_kind_names[] = {"BATCH_SCATTER_WITH_INPUT_SHAPE"};
static const int batch_output_kind_numbers[] = {0};
DEFINE_ENUM(batch_output_kind_enum, "inference.BatchOutput.Kind", batch_output_kind_names, batch_output_kind_numbers);

static const char *const priority_names[] = {"PRIORITY_DEFAULT", "PRIORITY_MAX", "PRIORITY_MIN"};
static const int priority_numbers[] = {0, 1, 2};
DEFINE_ENUM(priority_enum, "inference.ModelOptimizationPolicy.ModelPriority", priority_names, priority_numbers);

static const char *const timeout_action_names[] = {"REJECT", "DELAY"};
static const int timeout_action_numbers[] = {0, 1};
DEFINE_ENUM(timeout_action_enum, "inference.ModelQueuePolicy.TimeoutAction", timeout_action_names,
            timeout_action_numbers);

static const char *const control_kind_names[] = {"CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY",
                                                 "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"};
static const int control_kind_numbers[] = {0, 1, 2, 3};
DEFINE_ENUM(control_kind_enum, "inference.ModelSequenceBatching.Control.Kind", control_kind_names,
            control_kind_numbers);

/* ---- shared small messages ---- */

static const ts_tp_field_desc string_map_entry_fields[] = {SCALAR("key", TS_TP_STRING_T),
                                                           SCALAR("value", TS_TP_STRING_T)};

/* ---- instance groups ---- */

static const ts_tp_field_desc resource_fields[] = {SCALAR("name", TS_TP_STRING_T), SCALAR("global", TS_TP_BOOL),
                                                   SCALAR("count", TS_TP_UINT32)};
DEFINE_MESSAGE(resource_desc, "inference.ModelRateLimiter.Resource", resource_fields);

static const ts_tp_field_desc rate_limiter_fields[] = {REPEATED_MESSAGE("resources", resource_desc),
                                                       SCALAR("priority", TS_TP_UINT32)};
DEFINE_MESSAGE(rate_limiter_desc, "inference.ModelRateLimiter", rate_limiter_fields);

static const ts_tp_field_desc secondary_device_fields[] = {ENUM("kind", secondary_kind_enum),
                                                           SCALAR("device_id", TS_TP_INT64)};
DEFINE_MESSAGE(secondary_device_desc, "inference.ModelInstanceGroup.SecondaryDevice", secondary_device_fields);

static const ts_tp_field_desc instance_group_fields[] = {
    SCALAR("name", TS_TP_STRING_T),        ENUM("kind", ts_triton_instance_kind_enum),
    SCALAR("count", TS_TP_INT32),          MESSAGE("rate_limiter", rate_limiter_desc),
    REPEATED("gpus", TS_TP_INT32),         REPEATED_MESSAGE("secondary_devices", secondary_device_desc),
    REPEATED("profile", TS_TP_STRING_T),   SCALAR("passive", TS_TP_BOOL),
    SCALAR("host_policy", TS_TP_STRING_T),
};
DEFINE_MESSAGE(instance_group_desc, "inference.ModelInstanceGroup", instance_group_fields);

/* ---- inputs and outputs ---- */

static const ts_tp_field_desc reshape_fields[] = {REPEATED("shape", TS_TP_INT64)};
DEFINE_MESSAGE(reshape_desc, "inference.ModelTensorReshape", reshape_fields);

static const ts_tp_field_desc input_fields[] = {
    SCALAR("name", TS_TP_STRING_T),
    ENUM("data_type", ts_triton_data_type_enum),
    ENUM("format", input_format_enum),
    REPEATED("dims", TS_TP_INT64),
    MESSAGE("reshape", reshape_desc),
    SCALAR("is_shape_tensor", TS_TP_BOOL),
    SCALAR("allow_ragged_batch", TS_TP_BOOL),
    SCALAR("optional", TS_TP_BOOL),
    SCALAR("is_non_linear_format_io", TS_TP_BOOL),
};
DEFINE_MESSAGE(input_desc, "inference.ModelInput", input_fields);

static const ts_tp_field_desc output_fields[] = {
    SCALAR("name", TS_TP_STRING_T),
    ENUM("data_type", ts_triton_data_type_enum),
    REPEATED("dims", TS_TP_INT64),
    MESSAGE("reshape", reshape_desc),
    SCALAR("label_filename", TS_TP_STRING_T),
    SCALAR("is_shape_tensor", TS_TP_BOOL),
    SCALAR("is_non_linear_format_io", TS_TP_BOOL),
};
DEFINE_MESSAGE(output_desc, "inference.ModelOutput", output_fields);

static const ts_tp_field_desc batch_input_fields[] = {
    ENUM("kind", batch_input_kind_enum),
    REPEATED("target_name", TS_TP_STRING_T),
    ENUM("data_type", ts_triton_data_type_enum),
    REPEATED("source_input", TS_TP_STRING_T),
};
DEFINE_MESSAGE(batch_input_desc, "inference.BatchInput", batch_input_fields);

static const ts_tp_field_desc batch_output_fields[] = {
    REPEATED("target_name", TS_TP_STRING_T),
    ENUM("kind", batch_output_kind_enum),
    REPEATED("source_input", TS_TP_STRING_T),
};
DEFINE_MESSAGE(batch_output_desc, "inference.BatchOutput", batch_output_fields);

/* ---- version policy ---- */

static const ts_tp_field_desc latest_fields[] = {SCALAR("num_versions", TS_TP_UINT32)};
DEFINE_MESSAGE(latest_desc, "inference.ModelVersionPolicy.Latest", latest_fields);
static const ts_tp_message_desc all_desc = {"inference.ModelVersionPolicy.All", NULL, 0};
static const ts_tp_field_desc specific_fields[] = {REPEATED("versions", TS_TP_INT64)};
DEFINE_MESSAGE(specific_desc, "inference.ModelVersionPolicy.Specific", specific_fields);

static const ts_tp_field_desc version_policy_fields[] = {
    ONEOF_MESSAGE("latest", latest_desc, "policy_choice"),
    ONEOF_MESSAGE("all", all_desc, "policy_choice"),
    ONEOF_MESSAGE("specific", specific_desc, "policy_choice"),
};
DEFINE_MESSAGE(version_policy_desc, "inference.ModelVersionPolicy", version_policy_fields);

/* ---- optimization ---- */

static const ts_tp_field_desc graph_fields[] = {SCALAR("level", TS_TP_INT32)};
DEFINE_MESSAGE(graph_desc, "inference.ModelOptimizationPolicy.Graph", graph_fields);

static const ts_tp_field_desc shape_fields[] = {REPEATED("dim", TS_TP_INT64)};
DEFINE_MESSAGE(shape_desc, "inference.ModelOptimizationPolicy.Cuda.GraphSpec.Shape", shape_fields);

static const ts_tp_field_desc shape_entry_fields[] = {SCALAR("key", TS_TP_STRING_T), MESSAGE("value", shape_desc)};
DEFINE_MESSAGE(graph_spec_input_entry_desc, "inference.ModelOptimizationPolicy.Cuda.GraphSpec.InputEntry",
               shape_entry_fields);
DEFINE_MESSAGE(lower_bound_input_entry_desc, "inference.ModelOptimizationPolicy.Cuda.GraphSpec.LowerBound.InputEntry",
               shape_entry_fields);

static const ts_tp_field_desc lower_bound_fields[] = {SCALAR("batch_size", TS_TP_INT32),
                                                      REPEATED_MESSAGE("input", lower_bound_input_entry_desc)};
DEFINE_MESSAGE(lower_bound_desc, "inference.ModelOptimizationPolicy.Cuda.GraphSpec.LowerBound", lower_bound_fields);

static const ts_tp_field_desc graph_spec_fields[] = {
    SCALAR("batch_size", TS_TP_INT32),
    REPEATED_MESSAGE("input", graph_spec_input_entry_desc),
    MESSAGE("graph_lower_bound", lower_bound_desc),
};
DEFINE_MESSAGE(graph_spec_desc, "inference.ModelOptimizationPolicy.Cuda.GraphSpec", graph_spec_fields);

static const ts_tp_field_desc cuda_fields[] = {
    SCALAR("graphs", TS_TP_BOOL),
    SCALAR("busy_wait_events", TS_TP_BOOL),
    REPEATED_MESSAGE("graph_spec", graph_spec_desc),
    SCALAR("output_copy_stream", TS_TP_BOOL),
};
DEFINE_MESSAGE(cuda_desc, "inference.ModelOptimizationPolicy.Cuda", cuda_fields);

DEFINE_MESSAGE(accelerator_parameters_entry_desc,
               "inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator.ParametersEntry",
               string_map_entry_fields);

static const ts_tp_field_desc accelerator_fields[] = {
    SCALAR("name", TS_TP_STRING_T),
    REPEATED_MESSAGE("parameters", accelerator_parameters_entry_desc),
};
DEFINE_MESSAGE(accelerator_desc, "inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator",
               accelerator_fields);

static const ts_tp_field_desc execution_accelerators_fields[] = {
    REPEATED_MESSAGE("gpu_execution_accelerator", accelerator_desc),
    REPEATED_MESSAGE("cpu_execution_accelerator", accelerator_desc),
};
DEFINE_MESSAGE(execution_accelerators_desc, "inference.ModelOptimizationPolicy.ExecutionAccelerators",
               execution_accelerators_fields);

static const ts_tp_field_desc pinned_memory_fields[] = {SCALAR("enable", TS_TP_BOOL)};
DEFINE_MESSAGE(pinned_memory_desc, "inference.ModelOptimizationPolicy.PinnedMemoryBuffer", pinned_memory_fields);

static const ts_tp_field_desc optimization_fields[] = {
    MESSAGE("graph", graph_desc),
    ENUM("priority", priority_enum),
    MESSAGE("cuda", cuda_desc),
    MESSAGE("execution_accelerators", execution_accelerators_desc),
    MESSAGE("input_pinned_memory", pinned_memory_desc),
    MESSAGE("output_pinned_memory", pinned_memory_desc),
    SCALAR("gather_kernel_buffer_threshold", TS_TP_UINT32),
    SCALAR("eager_batching", TS_TP_BOOL),
};
DEFINE_MESSAGE(optimization_desc, "inference.ModelOptimizationPolicy", optimization_fields);

/* ---- scheduling ---- */

static const ts_tp_field_desc queue_policy_fields[] = {
    ENUM("timeout_action", timeout_action_enum),
    SCALAR("default_timeout_microseconds", TS_TP_UINT64),
    SCALAR("allow_timeout_override", TS_TP_BOOL),
    SCALAR("max_queue_size", TS_TP_UINT32),
};
DEFINE_MESSAGE(queue_policy_desc, "inference.ModelQueuePolicy", queue_policy_fields);

static const ts_tp_field_desc priority_queue_entry_fields[] = {SCALAR("key", TS_TP_UINT64),
                                                               MESSAGE("value", queue_policy_desc)};
DEFINE_MESSAGE(priority_queue_entry_desc, "inference.ModelDynamicBatching.PriorityQueuePolicyEntry",
               priority_queue_entry_fields);

static const ts_tp_field_desc dynamic_batching_fields[] = {
    REPEATED("preferred_batch_size", TS_TP_INT32),
    SCALAR("max_queue_delay_microseconds", TS_TP_UINT64),
    SCALAR("preserve_ordering", TS_TP_BOOL),
    SCALAR("priority_levels", TS_TP_UINT64),
    SCALAR("default_priority_level", TS_TP_UINT64),
    MESSAGE("default_queue_policy", queue_policy_desc),
    REPEATED_MESSAGE("priority_queue_policy", priority_queue_entry_desc),
};
DEFINE_MESSAGE(dynamic_batching_desc, "inference.ModelDynamicBatching", dynamic_batching_fields);

static const ts_tp_field_desc control_fields[] = {
    ENUM("kind", control_kind_enum),
    REPEATED("int32_false_true", TS_TP_INT32),
    REPEATED("fp32_false_true", TS_TP_FLOAT),
    REPEATED("bool_false_true", TS_TP_BOOL),
    ENUM("data_type", ts_triton_data_type_enum),
};
DEFINE_MESSAGE(control_desc, "inference.ModelSequenceBatching.Control", control_fields);

static const ts_tp_field_desc control_input_fields[] = {SCALAR("name", TS_TP_STRING_T),
                                                        REPEATED_MESSAGE("control", control_desc)};
DEFINE_MESSAGE(control_input_desc, "inference.ModelSequenceBatching.ControlInput", control_input_fields);

static const ts_tp_field_desc initial_state_fields[] = {
    ENUM("data_type", ts_triton_data_type_enum),
    REPEATED("dims", TS_TP_INT64),
    ONEOF_SCALAR("zero_data", TS_TP_BOOL, "state_data"),
    ONEOF_SCALAR("data_file", TS_TP_STRING_T, "state_data"),
    SCALAR("name", TS_TP_STRING_T),
};
DEFINE_MESSAGE(initial_state_desc, "inference.ModelSequenceBatching.InitialState", initial_state_fields);

static const ts_tp_field_desc state_fields[] = {
    SCALAR("input_name", TS_TP_STRING_T),
    SCALAR("output_name", TS_TP_STRING_T),
    ENUM("data_type", ts_triton_data_type_enum),
    REPEATED("dims", TS_TP_INT64),
    REPEATED_MESSAGE("initial_state", initial_state_desc),
    SCALAR("use_same_buffer_for_input_output", TS_TP_BOOL),
    SCALAR("use_growable_memory", TS_TP_BOOL),
};
DEFINE_MESSAGE(state_desc, "inference.ModelSequenceBatching.State", state_fields);

static const ts_tp_field_desc strategy_direct_fields[] = {SCALAR("max_queue_delay_microseconds", TS_TP_UINT64),
                                                          SCALAR("minimum_slot_utilization", TS_TP_FLOAT)};
DEFINE_MESSAGE(strategy_direct_desc, "inference.ModelSequenceBatching.StrategyDirect", strategy_direct_fields);

static const ts_tp_field_desc strategy_oldest_fields[] = {
    SCALAR("max_candidate_sequences", TS_TP_INT32),
    REPEATED("preferred_batch_size", TS_TP_INT32),
    SCALAR("max_queue_delay_microseconds", TS_TP_UINT64),
    SCALAR("preserve_ordering", TS_TP_BOOL),
};
DEFINE_MESSAGE(strategy_oldest_desc, "inference.ModelSequenceBatching.StrategyOldest", strategy_oldest_fields);

static const ts_tp_field_desc sequence_batching_fields[] = {
    ONEOF_MESSAGE("direct", strategy_direct_desc, "strategy_choice"),
    ONEOF_MESSAGE("oldest", strategy_oldest_desc, "strategy_choice"),
    SCALAR("max_sequence_idle_microseconds", TS_TP_UINT64),
    REPEATED_MESSAGE("control_input", control_input_desc),
    REPEATED_MESSAGE("state", state_desc),
    SCALAR("iterative_sequence", TS_TP_BOOL),
};
DEFINE_MESSAGE(sequence_batching_desc, "inference.ModelSequenceBatching", sequence_batching_fields);

DEFINE_MESSAGE(step_input_map_entry_desc, "inference.ModelEnsembling.Step.InputMapEntry", string_map_entry_fields);
DEFINE_MESSAGE(step_output_map_entry_desc, "inference.ModelEnsembling.Step.OutputMapEntry", string_map_entry_fields);

static const ts_tp_field_desc step_fields[] = {
    SCALAR("model_name", TS_TP_STRING_T),
    SCALAR("model_version", TS_TP_INT64),
    REPEATED_MESSAGE("input_map", step_input_map_entry_desc),
    REPEATED_MESSAGE("output_map", step_output_map_entry_desc),
    SCALAR("model_namespace", TS_TP_STRING_T),
};
DEFINE_MESSAGE(step_desc, "inference.ModelEnsembling.Step", step_fields);

static const ts_tp_field_desc ensembling_fields[] = {REPEATED_MESSAGE("step", step_desc),
                                                     SCALAR("max_inflight_responses", TS_TP_UINT32)};
DEFINE_MESSAGE(ensembling_desc, "inference.ModelEnsembling", ensembling_fields);

/* ---- parameters, warmup and the rest ---- */

static const ts_tp_field_desc model_parameter_fields[] = {SCALAR("string_value", TS_TP_STRING_T)};
DEFINE_MESSAGE(model_parameter_desc, "inference.ModelParameter", model_parameter_fields);

static const ts_tp_field_desc parameters_entry_fields[] = {SCALAR("key", TS_TP_STRING_T),
                                                           MESSAGE("value", model_parameter_desc)};
DEFINE_MESSAGE(parameters_entry_desc, "inference.ModelConfig.ParametersEntry", parameters_entry_fields);

static const ts_tp_field_desc warmup_input_fields[] = {
    ENUM("data_type", ts_triton_data_type_enum),
    REPEATED("dims", TS_TP_INT64),
    ONEOF_SCALAR("zero_data", TS_TP_BOOL, "input_data_type"),
    ONEOF_SCALAR("random_data", TS_TP_BOOL, "input_data_type"),
    ONEOF_SCALAR("input_data_file", TS_TP_STRING_T, "input_data_type"),
};
DEFINE_MESSAGE(warmup_input_desc, "inference.ModelWarmup.Input", warmup_input_fields);

static const ts_tp_field_desc warmup_inputs_entry_fields[] = {SCALAR("key", TS_TP_STRING_T),
                                                              MESSAGE("value", warmup_input_desc)};
DEFINE_MESSAGE(warmup_inputs_entry_desc, "inference.ModelWarmup.InputsEntry", warmup_inputs_entry_fields);

static const ts_tp_field_desc warmup_fields[] = {
    SCALAR("name", TS_TP_STRING_T),
    SCALAR("batch_size", TS_TP_UINT32),
    REPEATED_MESSAGE("inputs", warmup_inputs_entry_desc),
    SCALAR("count", TS_TP_UINT32),
};
DEFINE_MESSAGE(warmup_desc, "inference.ModelWarmup", warmup_fields);

static const ts_tp_field_desc operations_fields[] = {REPEATED("op_library_filename", TS_TP_STRING_T)};
DEFINE_MESSAGE(operations_desc, "inference.ModelOperations", operations_fields);

static const ts_tp_field_desc transaction_policy_fields[] = {SCALAR("decoupled", TS_TP_BOOL)};
DEFINE_MESSAGE(transaction_policy_desc, "inference.ModelTransactionPolicy", transaction_policy_fields);

DEFINE_MESSAGE(agent_parameters_entry_desc, "inference.ModelRepositoryAgents.Agent.ParametersEntry",
               string_map_entry_fields);
static const ts_tp_field_desc agent_fields[] = {SCALAR("name", TS_TP_STRING_T),
                                                REPEATED_MESSAGE("parameters", agent_parameters_entry_desc)};
DEFINE_MESSAGE(agent_desc, "inference.ModelRepositoryAgents.Agent", agent_fields);
static const ts_tp_field_desc agents_fields[] = {REPEATED_MESSAGE("agents", agent_desc)};
DEFINE_MESSAGE(agents_desc, "inference.ModelRepositoryAgents", agents_fields);

static const ts_tp_field_desc response_cache_fields[] = {SCALAR("enable", TS_TP_BOOL)};
DEFINE_MESSAGE(response_cache_desc, "inference.ModelResponseCache", response_cache_fields);

static const ts_tp_field_desc metric_identifier_fields[] = {SCALAR("family", TS_TP_STRING_T)};
DEFINE_MESSAGE(metric_identifier_desc, "inference.ModelMetrics.MetricControl.MetricIdentifier",
               metric_identifier_fields);
static const ts_tp_field_desc histogram_options_fields[] = {REPEATED("buckets", TS_TP_DOUBLE)};
DEFINE_MESSAGE(histogram_options_desc, "inference.ModelMetrics.MetricControl.HistogramOptions",
               histogram_options_fields);
static const ts_tp_field_desc metric_control_fields[] = {
    MESSAGE("metric_identifier", metric_identifier_desc),
    ONEOF_MESSAGE("histogram_options", histogram_options_desc, "metric_options"),
};
DEFINE_MESSAGE(metric_control_desc, "inference.ModelMetrics.MetricControl", metric_control_fields);
static const ts_tp_field_desc metrics_fields[] = {REPEATED_MESSAGE("metric_control", metric_control_desc)};
DEFINE_MESSAGE(metrics_desc, "inference.ModelMetrics", metrics_fields);

DEFINE_MESSAGE(cc_model_filenames_entry_desc, "inference.ModelConfig.CcModelFilenamesEntry", string_map_entry_fields);
DEFINE_MESSAGE(metric_tags_entry_desc, "inference.ModelConfig.MetricTagsEntry", string_map_entry_fields);

/* ---- ModelConfig ---- */

static const ts_tp_field_desc model_config_fields[] = {
    SCALAR("name", TS_TP_STRING_T),
    SCALAR("platform", TS_TP_STRING_T),
    SCALAR("backend", TS_TP_STRING_T),
    SCALAR("runtime", TS_TP_STRING_T),
    MESSAGE("version_policy", version_policy_desc),
    SCALAR("max_batch_size", TS_TP_INT32),
    REPEATED_MESSAGE("input", input_desc),
    REPEATED_MESSAGE("output", output_desc),
    REPEATED_MESSAGE("batch_input", batch_input_desc),
    REPEATED_MESSAGE("batch_output", batch_output_desc),
    MESSAGE("optimization", optimization_desc),
    ONEOF_MESSAGE("dynamic_batching", dynamic_batching_desc, "scheduling_choice"),
    ONEOF_MESSAGE("sequence_batching", sequence_batching_desc, "scheduling_choice"),
    ONEOF_MESSAGE("ensemble_scheduling", ensembling_desc, "scheduling_choice"),
    REPEATED_MESSAGE("instance_group", instance_group_desc),
    SCALAR("default_model_filename", TS_TP_STRING_T),
    REPEATED_MESSAGE("cc_model_filenames", cc_model_filenames_entry_desc),
    REPEATED_MESSAGE("metric_tags", metric_tags_entry_desc),
    REPEATED_MESSAGE("parameters", parameters_entry_desc),
    REPEATED_MESSAGE("model_warmup", warmup_desc),
    MESSAGE("model_operations", operations_desc),
    MESSAGE("model_transaction_policy", transaction_policy_desc),
    MESSAGE("model_repository_agents", agents_desc),
    MESSAGE("response_cache", response_cache_desc),
    MESSAGE("model_metrics", metrics_desc),
};
const ts_tp_message_desc ts_triton_model_config_desc = {"inference.ModelConfig", model_config_fields,
                                                        COUNT(model_config_fields)};
