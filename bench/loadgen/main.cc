// weft-loadgen: the open-loop load generator of the benchmark suite (see loadgen.h, --help).
#include "bench/loadgen/loadgen.h"

int main(int argc, char** argv) {
  return weft::bench::loadgen::Main(argc, argv);
}
