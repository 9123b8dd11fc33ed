// Training state of one NVLink, as the NVLink2 bridge's procedure interface drives it.
#pragma once

#include <string_view>

namespace nv2pt::platform {

enum class LinkState { kUntrained, kTraining, kTrained };
std::string_view to_string(LinkState state);

}  // namespace nv2pt::platform
