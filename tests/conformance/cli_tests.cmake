# dmx-mx CLI tests: a GoogleTest that runs the real binary and checks it against dmx::golden.
# Included by tests/conformance/CMakeLists.txt.
if(TARGET dmx-mx)
  add_executable(test_dmx_mx_cli ${CMAKE_CURRENT_LIST_DIR}/test_dmx_mx_cli.cc)
  target_link_libraries(test_dmx_mx_cli PRIVATE dmx_golden nlohmann_json::nlohmann_json
                                                GTest::gtest_main)
  target_compile_definitions(test_dmx_mx_cli PRIVATE DMX_MX_BINARY="$<TARGET_FILE:dmx-mx>")
  add_dependencies(test_dmx_mx_cli dmx-mx)
  gtest_discover_tests(test_dmx_mx_cli PROPERTIES LABELS conformance)
endif()
