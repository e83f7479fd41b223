# The benchmark suite's results (results.h: typed, schema.h's ToJson/FromJson) and report
# (report.h): goals, markdown and gnuplot plots. Included from
# bench/suite/CMakeLists.txt: include(${CMAKE_CURRENT_SOURCE_DIR}/report.cmake)
add_library(weft_bench_suite_report STATIC ${CMAKE_CURRENT_LIST_DIR}/report.cc
  ${CMAKE_CURRENT_LIST_DIR}/results.cc)
target_link_libraries(weft_bench_suite_report
  PUBLIC weft_common absl::status absl::statusor nlohmann_json::nlohmann_json
  PRIVATE absl::strings absl::str_format weft_warnings)

# Needs gnuplot on PATH (WritePlots runs it); apt-get install gnuplot-nox.
add_executable(weft_bench_suite_report_test ${CMAKE_CURRENT_LIST_DIR}/report_test.cc)
target_compile_definitions(weft_bench_suite_report_test
  PRIVATE WEFT_SUITE_TESTDATA="${CMAKE_CURRENT_LIST_DIR}/testdata"
          WEFT_BENCH_RESULTS="${PROJECT_SOURCE_DIR}/bench/results")
target_link_libraries(weft_bench_suite_report_test
  PRIVATE weft_bench_suite_report weft_testing GTest::gtest_main weft_warnings)
gtest_discover_tests(weft_bench_suite_report_test DISCOVERY_TIMEOUT 30)

# The results document's schema (results.h, schema.h): every type's JSON form both ways, and the
# errors that name a missing or malformed field.
add_executable(weft_bench_suite_results_test ${CMAKE_CURRENT_LIST_DIR}/results_test.cc)
target_compile_definitions(weft_bench_suite_results_test
  PRIVATE WEFT_SUITE_TESTDATA="${CMAKE_CURRENT_LIST_DIR}/testdata"
          WEFT_BENCH_RESULTS="${PROJECT_SOURCE_DIR}/bench/results")
target_link_libraries(weft_bench_suite_results_test
  PRIVATE weft_bench_suite_report GTest::gtest_main weft_warnings)
gtest_discover_tests(weft_bench_suite_results_test DISCOVERY_TIMEOUT 30)
