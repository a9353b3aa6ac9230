// reboundctl: see client/ctl.h for the commands and exit codes.
#include <iostream>

#include "client/ctl.h"

int main(int argc, char** argv) {
  return rebound::client::RunReboundctl(argc, argv, std::cout, std::cerr);
}
