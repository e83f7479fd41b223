# The `scale` scenario of weft-bench-suite (scale.h): ztunnel/agent RSS versus pods and versus
# idle tunnelled connections, on real `weftctl up` meshes. Included by bench/suite/CMakeLists.txt
# (include(scale.cmake)); paths are relative to this file so it works from any including scope.
add_library(weft_bench_suite_scale STATIC ${CMAKE_CURRENT_LIST_DIR}/scale.cc)
target_include_directories(weft_bench_suite_scale PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(weft_bench_suite_scale
  PUBLIC absl::status absl::statusor nlohmann_json::nlohmann_json weft_bench_suite_report
  PRIVATE weft_bench_lib weft_cli_up weft_testbed weft_scrape weft_common absl::strings
          weft_warnings)

# Root: brings up real meshes (namespaces, cgroups, iptables or eBPF capture).
add_executable(weft_bench_suite_scale_test ${CMAKE_CURRENT_LIST_DIR}/scale_test.cc)
target_compile_definitions(weft_bench_suite_scale_test PRIVATE
  WEFTCTL_PATH="$<TARGET_FILE:weftctl>"
  WEFT_TEASHOP_PATH="$<TARGET_FILE:weft-teashop>"
  WEFT_BENCH_SUITE_PATH="$<TARGET_FILE:weft-bench-suite>")
add_dependencies(weft_bench_suite_scale_test weftctl weftd ztunnel weft-agent weft-teashop
  weft-bench-suite)
target_link_libraries(weft_bench_suite_scale_test PRIVATE weft_bench_suite_scale weft_cli_up
  weft_testbed weft_testing GTest::gtest_main weft_warnings)
gtest_discover_tests(weft_bench_suite_scale_test DISCOVERY_TIMEOUT 30
  PROPERTIES RESOURCE_LOCK weft_netns LABELS namespaced TIMEOUT 300)
