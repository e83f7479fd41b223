// weft-h2echo: the h2c/gRPC echo server of the benchmark suite (see h2echo.h, --help).
#include "bench/loadgen/h2echo.h"

int main(int argc, char** argv) {
  return weft::bench::loadgen::H2EchoMain(argc, argv);
}
