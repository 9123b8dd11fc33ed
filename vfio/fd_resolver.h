// What a VFIO ioctl needs from the caller's file table: the objects behind the fds its argument names
// (VFIO_GROUP_SET_CONTAINER's container, VFIO_DEVICE_PCI_HOT_RESET's groups), and a new fd for a device
// (VFIO_GROUP_GET_DEVICE_FD). The vfio layer decodes the UAPI; whoever owns the fds (the interposer's fd table, a
// test, the fuzzer) implements this.
#pragma once

#include <memory>

#include "base/errno.h"

namespace nv2pt::vfio {

class Container;
class Group;
class PciDevice;

class FdResolver {
 public:
  virtual ~FdResolver() = default;
  // The container behind `fd`: EBADF if `fd` is not open, EINVAL if it is open but no container (fdget, then the
  // f_op check of vfio_group_set_container).
  virtual Result<std::shared_ptr<Container>> container(int fd) const = 0;
  // The group behind `fd`: EBADF / EINVAL likewise (vfio_group_get_external_user).
  virtual Result<Group*> group(int fd) const = 0;
  // A new fd for `device`, just opened through `group`. On error the caller releases the device again.
  virtual Result<int> install_device(Group& group, PciDevice& device) = 0;

  // A file table with no VFIO fds in it: every fd is EBADF, no device fd can be made (EMFILE).
  static FdResolver& none();
};

}  // namespace nv2pt::vfio
