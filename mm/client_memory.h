// Copies between the model and its client's memory, which share one process: as the kernel's copy_from_user and
// copy_to_user, a range the client unmapped or protected is EFAULT, never a fault inside the model.
// process_vm_readv/writev on the process itself; where those are refused (ENOSYS, or EPERM from a seccomp sandbox
// such as QEMU's -sandbox on) a plain copy, which trusts the range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/errno.h"

namespace nv2pt::mm {

Result<void> copy_from_client(void* out, uint64_t ua, size_t len);
Result<void> copy_to_client(uint64_t ua, const void* in, size_t len);
// strndup_user: the NUL-terminated string at `ua`, read no further than its terminator (it may end right before an
// unmapped page). EFAULT if it runs into memory that is not readable, EINVAL if it is `max` bytes or longer.
Result<std::string> copy_string_from_client(uint64_t ua, size_t max);

}  // namespace nv2pt::mm
