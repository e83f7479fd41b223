// weftctl: thin entry point; the commands live in weft_cli_lib.
#include <iostream>

#include "cli/commands.h"

int main(int argc, char** argv) {
  return weft::cli::Main(argc, argv, std::cout, std::cerr);
}
