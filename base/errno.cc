#include "base/errno.h"

#include <cstring>

namespace nv2pt {

std::string_view errno_name(Errno e) {
  // strerrorname_np (glibc 2.32+) gives "EINVAL" rather than the sentence strerror gives.
  const char* name = strerrorname_np(e.value);
  return name ? std::string_view(name) : std::string_view("E?");
}

}  // namespace nv2pt
