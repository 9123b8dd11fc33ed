#include "cli/command.h"

#include <fmt/format.h>

#include <ostream>

namespace nv2pt::cli {

platform::Machine* Context::machine() {
  if (machine_) return &*machine_;
  auto tree = options.topology.empty() ? platform::TopologyResult<platform::DeviceTree>(platform::DeviceTree::embedded_default())
                                       : platform::DeviceTree::load(options.topology);
  if (!tree) {
    fail(tree.error().message);
    return nullptr;
  }
  std::string origin = tree->origin();
  auto machine = platform::Machine::load(std::move(*tree), {.validate = !options.no_validate});
  if (!machine) {
    fail(fmt::format("{}: {}", origin, machine.error().message));
    return nullptr;
  }
  machine_.emplace(std::move(*machine));
  return &*machine_;
}

void Context::fail(std::string_view message, int code) {
  err << "nv2pt: error: " << message << "\n";
  exit_code = code;
}

int run(int argc, const char* const* argv, std::span<const CommandRegistrar> commands, std::ostream& out,
        std::ostream& err) {
  Context context(out, err);
  CLI::App app{"nv2pt: VFIO NVLink2 pass-through of V100 GPUs on a modelled POWER9 Witherspoon host", "nv2pt"};
  app.add_option("--topology", context.options.topology,
                 "Machine description: a .dts (compiled with dtc) or .dtb file; default: the built-in 6-GPU Witherspoon");
  app.add_flag("--no-validate", context.options.no_validate,
               "Load the topology without consistency checks (for the kernel's bad device-tree cases)");
  app.require_subcommand(1);
  app.fallthrough();  // global options are also accepted after the subcommand name
  for (CommandRegistrar add : commands) add(app, context);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {  // --help
      app.exit(e, out, err);
      return 0;
    }
    err << "nv2pt: error: " << e.what() << "\n";
    err << "Run with --help for more information.\n";
    return kExitUsage;
  }
  return context.exit_code;
}

}  // namespace nv2pt::cli
