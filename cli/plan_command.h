// `nv2pt plan`: TCE table and DMA window sizing for a guest layout, with the kernel's rules (see window_plan.h).
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "cli/command.h"
#include "cli/window_plan.h"

namespace nv2pt::cli {

void register_plan_command(CLI::App& app, Context& context);

// "16G", "64K", "16MiB", "0x244000000000", "4096": bytes, or nullopt for anything else (or overflow).
std::optional<uint64_t> parse_size(std::string_view text);

std::string format_plan(const Plan& plan);
std::string format_plan_json(const Plan& plan);

}  // namespace nv2pt::cli
