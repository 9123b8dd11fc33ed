// Number formatting shared by the nv2pt subcommands.
#pragma once

#include <cstdint>
#include <string>

namespace nv2pt::cli {

// The largest binary unit that divides the size exactly: "128 GiB", "64 KiB", "0x1234 bytes" style fallback.
std::string size_text(uint64_t bytes);

// Sizes for tables of figures: exact units where they divide, else MiB with up to 4 decimals ("16384.5 MiB").
std::string size_figure(uint64_t bytes);

}  // namespace nv2pt::cli
