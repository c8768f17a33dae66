# Fuzz targets: every fuzz/fuzz_<name>.c defines LLVMFuzzerTestOneInput for one parser.
# - Always (gcc or clang, plain or sanitized build): each target is also linked with the tiny driver
#   tests/fuzz/replay_main.c into fuzz_replay_<name>, and the CTest test fuzz.replay_<name> feeds it every
#   file of fuzz/corpus/<name> and fuzz/regressions/<name>, so every build replays the seeds and the inputs
#   that once crashed a parser.
# - With TESSERA_FUZZ=ON (clang only): fuzz_<name> is linked with libFuzzer for scripts/fuzz.sh, and
#   tessera_core is instrumented for coverage and built with ASan and UBSan.
# A target whose parser is not in the tree yet names its source with a line "fuzz-requires: <path>" and is
# left out until that file exists.
option(TESSERA_FUZZ "Build libFuzzer targets (needs clang)" OFF)

if(TESSERA_KERNELS_ONLY)
  return()
endif()

if(TESSERA_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TESSERA_FUZZ needs clang (configure with CC=clang)")
  endif()
  set(TS_FUZZ_SANITIZERS "-fsanitize=address,undefined;-fno-sanitize-recover=undefined;-fno-omit-frame-pointer")
  target_compile_options(tessera_core PRIVATE -fsanitize=fuzzer-no-link ${TS_FUZZ_SANITIZERS})
  # Everything linking the instrumented library needs the sanitizer runtimes.
  target_link_options(tessera_core INTERFACE -fsanitize=address,undefined)
endif()

file(GLOB TS_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${TS_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" name ${name})

  file(STRINGS ${src} requires REGEX "fuzz-requires: ")
  set(missing "")
  foreach(line ${requires})
    string(REGEX REPLACE ".*fuzz-requires: ([^ ]+).*" "\\1" path "${line}")
    if(NOT EXISTS ${CMAKE_SOURCE_DIR}/${path})
      set(missing ${path})
    endif()
  endforeach()
  if(missing)
    message(STATUS "tessera: fuzz target ${name} skipped (${missing} is not in the tree)")
    continue()
  endif()

  add_executable(fuzz_replay_${name} ${src} ${CMAKE_SOURCE_DIR}/tests/fuzz/replay_main.c)
  target_link_libraries(fuzz_replay_${name} PRIVATE tessera_core)
  add_test(NAME fuzz.replay_${name}
    COMMAND fuzz_replay_${name} ${CMAKE_SOURCE_DIR}/fuzz/corpus/${name} ${CMAKE_SOURCE_DIR}/fuzz/regressions/${name})
  set_tests_properties(fuzz.replay_${name} PROPERTIES TIMEOUT 900 LABELS "fuzz")

  if(TESSERA_FUZZ)
    add_executable(fuzz_${name} ${src})
    target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${TS_FUZZ_SANITIZERS})
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(fuzz_${name} PRIVATE tessera_core)
    list(APPEND TS_FUZZ_TARGETS fuzz_${name})
  endif()
endforeach()

if(TESSERA_FUZZ)
  add_custom_target(fuzz_all DEPENDS ${TS_FUZZ_TARGETS})
endif()
