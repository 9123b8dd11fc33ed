// A VFIO client written against the real UAPI, run under LD_PRELOAD=libnv2pt_preload.so (no QEMU): the paths and
// calls QEMU 7.2 does not exercise. Sysfs shapes; GROUP_SET_CONTAINER with a closed fd (EBADF) and with fds that
// are no container (EINVAL); the overloaded ioctl numbers dispatched by fd type; VFIO_DEVICE_PCI_HOT_RESET with
// group fds resolved through the fd table (a container fd is EINVAL, a closed fd EBADF); device mmap and munmap;
// and close releasing everything, so the group opens again. Prints one line per check; exit 1 on the first failure.
// `uapi_probe fatal-pread`: reads GPU RAM through pread before any link is trained, a fatal HMI on a thread that
// holds the device's lock (hmi_fatal_pread.sh checks what nv2pt run and the report say).
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) {
    ++failures;
    std::exit(1);
  }
}

// -1 with errno `e`.
bool fails_with(long r, int e) { return r == -1 && errno == e; }

std::string read_all(const char* path) {
  std::string out;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<open failed: " + std::string(strerror(errno)) + ">";
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

const char* kGpu = "0004:04:00.0";
const char* kBridge = "0006:00:00.0";

// The HMI kills the process inside pread; returning is a failure.
int fatal_pread() {
  int group = open("/dev/vfio/4", O_RDWR | O_CLOEXEC);
  int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  check(group >= 0 && container >= 0 && ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0 &&
            ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0,
        "group 4 in a v2 container");
  int gpu = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, kGpu);
  vfio_region_info rinfo = {.argsz = sizeof rinfo, .index = VFIO_PCI_NUM_REGIONS};
  check(gpu >= 0 && ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &rinfo) == 0 && rinfo.size > 0, "GPU-RAM region");
  uint64_t word = 0;
  const ssize_t n = pread(gpu, &word, sizeof word, static_cast<off_t>(rinfo.offset));
  check(false, "pread of GPU RAM before link training returned " + std::to_string(n));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "fatal-pread") return fatal_pread();
  // --- sysfs, /dev/vfio, /proc/device-tree ---
  struct stat st;
  check(stat("/sys/bus/pci/devices/0004:04:00.0", &st) == 0 && S_ISDIR(st.st_mode), "device directory");
  check(lstat("/sys/bus/pci/devices/0004:04:00.0/iommu_group", &st) == 0 && S_ISLNK(st.st_mode), "iommu_group is a link");
  char link[PATH_MAX] = {};
  ssize_t n = readlink("/sys/bus/pci/devices/0004:04:00.0/iommu_group", link, sizeof link - 1);
  check(n > 0 && std::string(link, static_cast<size_t>(n)) == "../../../kernel/iommu_groups/4", "iommu_group -> group 4");
  char* real = realpath("/sys/bus/pci/devices/0004:04:00.0/subsystem", nullptr);
  check(real && std::string(real) == "/sys/bus/pci", "subsystem resolves to /sys/bus/pci");
  free(real);
  const std::string devspec = read_all("/sys/bus/pci/devices/0004:04:00.0/devspec");
  check(!devspec.empty() && devspec[0] == '/' && devspec.back() != '\n', "devspec, no newline: " + devspec);
  const std::string loc = read_all(("/proc/device-tree" + devspec + "/ibm,loc-code").c_str());
  check(loc == std::string("GPU0") + '\0', "ibm,loc-code with its NUL");
  check(stat("/dev/vfio/vfio", &st) == 0 && S_ISCHR(st.st_mode), "/dev/vfio/vfio is a character device");
  check(fails_with(open("/dev/vfio/7", O_RDWR), ENOENT), "/dev/vfio/7: no such group");
  check(stat("/sys/kernel/iommu_groups/4/devices/0006:00:00.1", &st) == 0, "group 4 lists bridge 0006:00:00.1");

  // --- group and container ---
  int group = open("/dev/vfio/4", O_RDWR | O_CLOEXEC);
  check(group >= 0, "open /dev/vfio/4");
  check(fails_with(open("/dev/vfio/4", O_RDWR), EBUSY), "second open of the group: EBUSY");
  vfio_group_status status = {.argsz = sizeof status};
  check(ioctl(group, VFIO_GROUP_GET_STATUS, &status) == 0 && (status.flags & VFIO_GROUP_FLAGS_VIABLE), "group viable");
  int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  check(container >= 0 && ioctl(container, VFIO_GET_API_VERSION) == VFIO_API_VERSION, "container, API version");
  check(ioctl(container, VFIO_CHECK_EXTENSION, VFIO_SPAPR_TCE_v2_IOMMU) == 1, "sPAPR TCE v2 offered");
  // An fd number nothing holds (a closed fd's number would be reused by the next open).
  int closed = 1000;
  while (fcntl(closed, F_GETFD) != -1) ++closed;
  check(fails_with(ioctl(group, VFIO_GROUP_SET_CONTAINER, &closed), EBADF), "SET_CONTAINER(closed fd): EBADF");
  int devnull = open("/dev/null", O_RDONLY);
  check(fails_with(ioctl(group, VFIO_GROUP_SET_CONTAINER, &devnull), EINVAL), "SET_CONTAINER(/dev/null): EINVAL");
  check(fails_with(ioctl(group, VFIO_GROUP_SET_CONTAINER, &group), EINVAL), "SET_CONTAINER(a group fd): EINVAL");
  check(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0, "SET_CONTAINER(container)");
  check(ioctl(container, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU) == 0, "SET_IOMMU(v2)");

  // 0x3b70 on the container is IOMMU_SPAPR_TCE_GET_INFO.
  vfio_iommu_spapr_tce_info info = {.argsz = sizeof info};
  check(ioctl(container, VFIO_IOMMU_SPAPR_TCE_GET_INFO, &info) == 0 && info.dma32_window_size > 0,
        "container 0x3b70 = TCE_GET_INFO");

  int gpu = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, kGpu);
  int bridge = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, kBridge);
  check(gpu >= 0 && bridge >= 0, "device fds of the GPU and a bridge");
  check(fails_with(ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0004:05:00.0"), ENODEV), "device of another group: ENODEV");
  vfio_device_info dinfo = {.argsz = sizeof dinfo};
  check(ioctl(gpu, VFIO_DEVICE_GET_INFO, &dinfo) == 0 && (dinfo.flags & VFIO_DEVICE_FLAGS_PCI) &&
            dinfo.num_regions == VFIO_PCI_NUM_REGIONS + 1,
        "GPU: PCI device with one extra region");

  // 0x3b70 on a device is GET_PCI_HOT_RESET_INFO: a short argsz gets ENOSPC and the count.
  vfio_pci_hot_reset_info hinfo = {.argsz = sizeof hinfo};
  const bool enospc = fails_with(ioctl(gpu, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hinfo), ENOSPC);
  check(enospc && hinfo.count >= 1,
        "device 0x3b70 = GET_PCI_HOT_RESET_INFO (ENOSPC, count " + std::to_string(hinfo.count) + ")");

  // 0x3b71 on a device is PCI_HOT_RESET, with group fds.
  std::vector<char> buf(sizeof(vfio_pci_hot_reset) + sizeof(int32_t));
  auto* reset = reinterpret_cast<vfio_pci_hot_reset*>(buf.data());
  reset->argsz = static_cast<uint32_t>(buf.size());
  reset->count = 1;
  reset->group_fds[0] = container;
  check(fails_with(ioctl(gpu, VFIO_DEVICE_PCI_HOT_RESET, reset), EINVAL), "HOT_RESET with a container fd: EINVAL");
  reset->group_fds[0] = closed;
  check(fails_with(ioctl(gpu, VFIO_DEVICE_PCI_HOT_RESET, reset), EBADF), "HOT_RESET with a closed fd: EBADF");
  reset->group_fds[0] = group;
  check(ioctl(gpu, VFIO_DEVICE_PCI_HOT_RESET, reset) == 0, "HOT_RESET with the group fd");

  // Config space through pread on the device fd: vendor and device id.
  uint32_t ids = 0;
  const off_t config = static_cast<off_t>(VFIO_PCI_CONFIG_REGION_INDEX) << 40;
  check(pread(gpu, &ids, 4, config) == 4 && ids == (0x1db1u << 16 | 0x10de), "config space 10de:1db1 via pread");

  // The GPU-RAM region: one mmap, then munmap through the interposer.
  vfio_region_info rinfo = {.argsz = sizeof rinfo, .index = VFIO_PCI_NUM_REGIONS};
  check(ioctl(gpu, VFIO_DEVICE_GET_REGION_INFO, &rinfo) == 0 && rinfo.size > 0 && (rinfo.flags & VFIO_REGION_INFO_FLAG_MMAP),
        "GPU-RAM region info");
  void* ram = mmap(nullptr, rinfo.size, PROT_READ | PROT_WRITE, MAP_SHARED, gpu, static_cast<off_t>(rinfo.offset));
  check(ram != MAP_FAILED, "mmap GPU RAM");
  check(mmap(nullptr, rinfo.size, PROT_READ | PROT_WRITE, MAP_SHARED, gpu, static_cast<off_t>(rinfo.offset)) == MAP_FAILED &&
            errno == EPERM,
        "second mmap of GPU RAM: EPERM");
  check(munmap(ram, rinfo.size) == 0, "munmap GPU RAM");

  // A device fd that is closed, and then all the rest: the group is free again afterwards.
  check(close(bridge) == 0 && close(gpu) == 0, "close device fds");
  check(fails_with(ioctl(gpu, VFIO_DEVICE_GET_INFO, &dinfo), EBADF), "closed device fd is no longer ours (EBADF)");
  check(close(group) == 0 && close(container) == 0, "close group and container");
  group = open("/dev/vfio/4", O_RDWR | O_CLOEXEC);
  check(group >= 0, "group 4 opens again after close");
  close(group);
  close(devnull);
  std::printf("PASS\n");
  return failures ? 1 : 0;
}
