// Names and argument summaries of VFIO ioctls for the event log. The same number means different calls on a
// container and on a device fd (0x3b70, 0x3b71, 0x3b75), so the fd kind is part of the key.
#pragma once

#include <string>

#include "base/errno.h"
#include "interpose/fd_table.h"

namespace nv2pt::interpose {

// "VFIO_IOMMU_MAP_DMA{vaddr=0x7f..,iova=0x0,size=0x1000,flags=0x3}"; read after the call, so out fields show
// what the model answered. `arg` is trusted to point at the struct when the call succeeded.
std::string describe_ioctl(FdKind kind, unsigned long cmd, unsigned long arg, const Result<long>& result);

}  // namespace nv2pt::interpose
