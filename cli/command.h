// What every `nv2pt` subcommand gets: the global options, the output streams and the machine, loaded on first
// use from --topology (or the embedded default).
//
// A subcommand lives in cli/<name>_command.{h,cc} and exposes one `register_<name>_command(CLI::App&, Context&)`,
// listed in cli/main.cc.
#pragma once

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <optional>
#include <span>
#include <string>

#include "platform/machine.h"

namespace nv2pt::cli {

// Exit status of a bad command line or a topology that does not load.
inline constexpr int kExitUsage = 2;

struct GlobalOptions {
  std::string topology;  // .dts or .dtb; empty = the embedded default
  bool no_validate = false;
};

class Context {
 public:
  Context(std::ostream& out, std::ostream& err) : out(out), err(err) {}

  GlobalOptions options;
  std::ostream& out;
  std::ostream& err;
  int exit_code = 0;  // set by the subcommand that ran

  // The machine, loaded once. On failure prints "nv2pt: error: ..." to err, sets exit_code to kExitUsage and
  // returns nullptr.
  platform::Machine* machine();

  // Prints "nv2pt: error: <message>" and sets exit_code.
  void fail(std::string_view message, int code = kExitUsage);

 private:
  std::optional<platform::Machine> machine_;
};

using CommandRegistrar = void (*)(CLI::App& app, Context& context);

// Parses argv, runs the chosen subcommand and returns the exit status: 0, the subcommand's status, or
// kExitUsage for a bad command line (the reason on err). --help prints to out and returns 0.
int run(int argc, const char* const* argv, std::span<const CommandRegistrar> commands, std::ostream& out,
        std::ostream& err);

}  // namespace nv2pt::cli
