// weft-teashop: the demo application (see examples/teashop/README.md).
#include "examples/teashop/app.h"

int main(int argc, char** argv) {
  return weft::teashop::TeashopMain(argc, argv);
}
