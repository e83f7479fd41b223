# TLS/X.509 helpers (common/tls.{h,cc}); included from common/CMakeLists.txt.
target_sources(weft_common PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tls.cc)

add_executable(weft_tls_test ${CMAKE_CURRENT_SOURCE_DIR}/tls_test.cc)
target_link_libraries(weft_tls_test PRIVATE weft_common GTest::gtest_main weft_warnings)
gtest_discover_tests(weft_tls_test DISCOVERY_TIMEOUT 30)
