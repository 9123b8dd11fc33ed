#include "platform/link_state.h"

namespace nv2pt::platform {

std::string_view to_string(LinkState state) {
  switch (state) {
    case LinkState::kUntrained: return "untrained";
    case LinkState::kTraining: return "training";
    case LinkState::kTrained: return "trained";
  }
  return "unknown";
}

}  // namespace nv2pt::platform
