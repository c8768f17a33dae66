# Every tests/<area>/test_*.c is one cmocka executable and one CTest test named <area>.<name>.
# Tests find ../shared through TESSERA_SHARED_DIR and the project root through TESSERA_SOURCE_DIR.
if(TESSERA_KERNELS_ONLY)
  file(GLOB TS_TEST_SOURCES CONFIGURE_DEPENDS tests/backend/test_kernels*.c)
  set(TS_TEST_LIB tessera_kernels)
  set(TS_TEST_SUPPORT)
else()
  file(GLOB_RECURSE TS_TEST_SOURCES CONFIGURE_DEPENDS tests/*/test_*.c)
  list(FILTER TS_TEST_SOURCES EXCLUDE REGEX "/tests/support/")
  set(TS_TEST_LIB tessera_core)
  file(GLOB TS_TEST_SUPPORT CONFIGURE_DEPENDS tests/support/*.c)
endif()

if(TESSERA_KERNELS_ONLY)
  # Cross builds (and bare machines) may have no cmocka for the target: the kernel tests then use
  # their own small runner.
  find_package(PkgConfig)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(CMOCKA IMPORTED_TARGET cmocka)
  endif()
else()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
endif()

foreach(src ${TS_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(dir ${src} DIRECTORY)
  get_filename_component(area ${dir} NAME)
  set(target "${area}_${name}")
  add_executable(${target} ${src} ${TS_TEST_SUPPORT})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  if(CMOCKA_FOUND)
    target_link_libraries(${target} PRIVATE ${TS_TEST_LIB} PkgConfig::CMOCKA)
  else()
    target_link_libraries(${target} PRIVATE ${TS_TEST_LIB})
    target_compile_definitions(${target} PRIVATE TS_TEST_NO_CMOCKA=1)
  endif()
  target_compile_definitions(${target} PRIVATE
    TESSERA_SHARED_DIR="${TESSERA_SHARED_DIR}"
    TESSERA_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${area}.${name} COMMAND ${target})
  if(TESSERA_KERNELS_ONLY)
    set_tests_properties(${area}.${name} PROPERTIES TIMEOUT 900 LABELS ${area} SKIP_RETURN_CODE 77
      ENVIRONMENT "TESSERA_BUILD_DIR=${CMAKE_BINARY_DIR}")
  else()
    set_tests_properties(${area}.${name} PROPERTIES TIMEOUT 900 LABELS ${area} SKIP_RETURN_CODE 77
      ENVIRONMENT "TESSERA_BINARY=$<TARGET_FILE:tessera>;TESSERA_BUILD_DIR=${CMAKE_BINARY_DIR}")
  endif()
endforeach()

# Script-driven tests (CLI end to end, server protocols with real clients) live in tests/*/*.sh and *.py
if(NOT TESSERA_KERNELS_ONLY)
  file(GLOB_RECURSE TS_SCRIPT_TESTS CONFIGURE_DEPENDS tests/*/test_*.sh tests/*/test_*.py)
  foreach(script ${TS_SCRIPT_TESTS})
    get_filename_component(name ${script} NAME_WE)
    get_filename_component(dir ${script} DIRECTORY)
    get_filename_component(area ${dir} NAME)
    if(script MATCHES "\\.py$")
      set(cmd python3 ${script})
    else()
      set(cmd bash ${script})
    endif()
    add_test(NAME ${area}.${name} COMMAND ${cmd})
    # A script may ask for extra labels with a line "# ctest-labels: a;b" (e.g. no_sanitizer for tests
    # that are too slow under ASan).
    file(STRINGS ${script} extra_labels REGEX "^# ctest-labels: " LIMIT_COUNT 1)
    string(REPLACE "# ctest-labels: " "" extra_labels "${extra_labels}")
    set_tests_properties(${area}.${name} PROPERTIES TIMEOUT 900 LABELS "${area};script;${extra_labels}" SKIP_RETURN_CODE 77
      ENVIRONMENT "TESSERA_BINARY=$<TARGET_FILE:tessera>;TESSERA_SHARED_DIR=${TESSERA_SHARED_DIR};TESSERA_SOURCE_DIR=${CMAKE_SOURCE_DIR};TESSERA_BUILD_DIR=${CMAKE_BINARY_DIR}")
    # "# ctest-cost: N" (about N seconds under the sanitizers): a fresh clone has no timings of its own, and
    # ctest -j starts costlier tests first, so the longest do not end the run alone on one core
    file(STRINGS ${script} cost REGEX "^# ctest-cost: " LIMIT_COUNT 1)
    if(cost)
      string(REPLACE "# ctest-cost: " "" cost "${cost}")
      set_tests_properties(${area}.${name} PROPERTIES COST ${cost})
    endif()
  endforeach()
  # the compiled tests that take longest (seconds under the sanitizers, 2-core machine)
  set_tests_properties(quant.test_tune PROPERTIES COST 55)
  set_tests_properties(model.test_reference PROPERTIES COST 35)
endif()
