// `nv2pt lspci`: the machine's PCI functions as the seed lists them, "<IOMMU group> <address> <class>: <vendor>
// <device> (rev xx)", sorted by address; -v adds the NVLink2 details of GPUs and bridges.
#pragma once

#include <string>

#include "cli/command.h"
#include "platform/machine.h"

namespace nv2pt::cli {

struct LspciOptions {
  bool verbose = false;
};

void register_lspci_command(CLI::App& app, Context& context);

std::string format_lspci(const platform::Machine& machine, const LspciOptions& options);

}  // namespace nv2pt::cli
