// nv2pt: the command-line tool. Each subcommand registers itself from cli/<name>_command.cc; add new ones to
// kCommands.
#include <iostream>

#include "cli/command.h"
#include "cli/dtb_command.h"
#include "cli/lspci_command.h"
#include "cli/plan_command.h"
#include "cli/run_command.h"

namespace {

constexpr nv2pt::cli::CommandRegistrar kCommands[] = {
    nv2pt::cli::register_lspci_command,
    nv2pt::cli::register_plan_command,
    nv2pt::cli::register_run_command,
    nv2pt::cli::register_dtb_command,
};

}  // namespace

int main(int argc, char** argv) { return nv2pt::cli::run(argc, argv, kCommands, std::cout, std::cerr); }
