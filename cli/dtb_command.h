// `nv2pt dtb show FILE.dtb`: what a guest gets from NVLink2 pass-through, read from the device tree QEMU built
// (-machine dumpdtb=FILE): GPU-RAM memory nodes, the npuphb link nodes, the PHB's ATSD registers, and the
// properties that tie GPUs, bridges, links and memory together.
#pragma once

#include <string>

#include "cli/command.h"
#include "platform/device_tree.h"

namespace nv2pt::cli {

void register_dtb_command(CLI::App& app, Context& context);

std::string format_guest_nvlink(const platform::DeviceTree& tree);

}  // namespace nv2pt::cli
