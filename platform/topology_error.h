// Errors of loading and checking a machine topology. They end up in front of a user (the CLI, a test log), so
// they carry a sentence naming the file, node and property instead of an errno.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace nv2pt::platform {

struct TopologyError {
  std::string message;
};

template <class T>
using TopologyResult = std::expected<T, TopologyError>;

inline std::unexpected<TopologyError> topology_error(std::string message) {
  return std::unexpected<TopologyError>(TopologyError{std::move(message)});
}

}  // namespace nv2pt::platform
