// Client death: a client killed at any point (SIGKILL in the middle of MAP_DMA, of a GPU-RAM fault, of a
// REGISTER that pins) leaves nothing behind that the next client trips over. Ownership of a group across
// processes is an flock on a lock file in the runtime directory, which the kernel drops with the process.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "vfio/host.h"
#include "vfio/test_host.h"

namespace nv2pt::vfio {
namespace {

using namespace testing;

enum class Work { kMapUnmap, kGpuRamFaults, kRegisterUnregister, kIdle };

HostOptions options_for(const std::string& runtime_dir) {
  HostOptions o;
  o.runtime_dir = runtime_dir;
  o.hardware.hmi_policy = platform::HmiPolicy::kLog;
  return o;
}

// The client, in a forked child: owns groups 4 and 5, sets up a v2 container the way QEMU does, reports ready on
// `ready_fd`, then loops on `work` until it is killed. Exit codes name the step that failed.
[[noreturn]] void client(const std::string& runtime_dir, int ready_fd, Work work) {
  auto host = Host::create(platform::Machine::load_default(), options_for(runtime_dir));
  if (!host) _exit(10);
  mm::AddressSpace as(process_options(static_cast<uint64_t>(getpid())));
  auto g4 = (*host)->open_group(4);
  auto g5 = (*host)->open_group(5);
  if (!g4 || !g5) _exit(11);
  std::shared_ptr<Container> container = (*host)->open_container();
  if (!(*g4)->set_container(container) || !(*g5)->set_container(container)) _exit(12);
  if (!container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU)) _exit(13);
  auto ioctl = [&](unsigned long cmd, void* arg) {
    return container->ioctl(as, cmd, reinterpret_cast<unsigned long>(arg)).has_value();
  };
  const uint64_t ram_size = 64 * MiB;
  void* ram = mmap(nullptr, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const uint64_t ram_ua = (reinterpret_cast<uint64_t>(ram) + 64 * KiB - 1) & ~(64 * KiB - 1);
  const uint64_t guest_size = 32 * MiB;
  vfio_iommu_spapr_register_memory reg{24, 0, ram_ua, guest_size};
  if (!ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg)) _exit(14);
  vfio_iommu_spapr_tce_remove remove{16, 0, 0};  // QEMU drops the default window first
  if (!ioctl(VFIO_IOMMU_SPAPR_TCE_REMOVE, &remove)) _exit(21);
  vfio_iommu_spapr_tce_create create{40, 0, 16, 0, 1ull << 32, 2, 0, 0};
  if (!ioctl(VFIO_IOMMU_SPAPR_TCE_CREATE, &create)) _exit(15);
  auto gpu = (*g4)->get_device(as, "0004:04:00.0");
  if (!gpu) _exit(16);
  vfio_region_info nv2{sizeof(nv2)};
  nv2.index = 9;
  if (!(*gpu)->ioctl(as, VFIO_DEVICE_GET_REGION_INFO, reinterpret_cast<unsigned long>(&nv2))) _exit(17);
  auto gpu_ram = (*gpu)->mmap(as, nullptr, nv2.size, PROT_READ | PROT_WRITE, MAP_SHARED, nv2.offset);
  if (!gpu_ram) _exit(18);
  vfio_iommu_spapr_register_memory reg_gpu{24, 0, reinterpret_cast<uint64_t>(*gpu_ram), nv2.size};
  if (!ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg_gpu)) _exit(19);
  if (write(ready_fd, "r", 1) != 1) _exit(20);

  auto* gpu_bytes = static_cast<volatile uint8_t*>(*gpu_ram);
  for (uint64_t round = 0;; ++round) {
    switch (work) {
      case Work::kMapUnmap: {
        vfio_iommu_type1_dma_map map{32, 3, ram_ua, 0, guest_size};
        vfio_iommu_type1_dma_map map_gpu{32, 3, reinterpret_cast<uint64_t>(*gpu_ram), 1ull << 31, 512 * MiB};
        vfio_iommu_type1_dma_unmap unmap{24, 0, 0, 1ull << 32};
        if (!ioctl(VFIO_IOMMU_MAP_DMA, &map) || !ioctl(VFIO_IOMMU_MAP_DMA, &map_gpu) ||
            !ioctl(VFIO_IOMMU_UNMAP_DMA, &unmap))
          _exit(30);
        break;
      }
      case Work::kGpuRamFaults:  // every touch is a fresh page: a userfault served by the service thread
        gpu_bytes[(round % 262144) * 64 * KiB] = 1;
        break;
      case Work::kRegisterUnregister: {
        vfio_iommu_spapr_register_memory more{24, 0, ram_ua + guest_size, 16 * MiB};
        if (!ioctl(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &more) || !ioctl(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, &more))
          _exit(31);
        break;
      }
      case Work::kIdle: pause(); break;
    }
  }
}

struct Child {
  pid_t pid;
  int ready_fd;
};

Child start_client(const std::string& runtime_dir, Work work) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    client(runtime_dir, fds[1], work);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// Waits for the child's ready byte; false (and the child's exit status in the message) if it died first.
bool wait_ready(const Child& c) {
  char byte;
  const bool ready = read(c.ready_fd, &byte, 1) == 1;
  close(c.ready_fd);
  if (!ready) {
    int status = 0;
    waitpid(c.pid, &status, 0);
    ADD_FAILURE() << "client died before it was ready: exit " << WEXITSTATUS(status);
  }
  return ready;
}

void kill_and_reap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "exit " << WEXITSTATUS(status);
}

TEST(ClientDeath, KilledClientsLeaveNoStaleOwnership) {
  char tmpl[] = "/tmp/nv2pt-client-death-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::mt19937 random(12888);
  for (int round = 0; round < 12; ++round) {
    const Work work = static_cast<Work>(round % 3);
    Child c = start_client(dir, work);
    if (!wait_ready(c)) break;
    // Killed somewhere inside its loop: 0-20 ms in.
    usleep(std::uniform_int_distribution<useconds_t>(0, 20000)(random));
    kill_and_reap(c.pid);
  }

  // A live owner still keeps the groups: the next client gets EBUSY, and gets them once the owner is killed.
  Child owner = start_client(dir, Work::kIdle);
  ASSERT_TRUE(wait_ready(owner));
  auto host = Host::create(platform::Machine::load_default(), options_for(dir));
  ASSERT_TRUE(host);
  EXPECT_EQ((*host)->open_group(4).error(), kEBUSY);
  EXPECT_EQ((*host)->open_group(5).error(), kEBUSY);
  kill_and_reap(owner.pid);

  // The next run: every group opens, and a QEMU-style setup on group 4 works.
  mm::AddressSpace as(process_options(1));
  std::vector<Group*> groups;
  for (int id : (*host)->group_ids()) {
    auto g = (*host)->open_group(id);
    ASSERT_TRUE(g) << "group " << id << ": " << errno_name(g.error());
    groups.push_back(*g);
  }
  std::shared_ptr<Container> container = (*host)->open_container();
  ASSERT_TRUE(groups[0]->set_container(container));
  ASSERT_TRUE(container->set_iommu(VFIO_SPAPR_TCE_v2_IOMMU));
  ClientMemory ram(16 * MiB);
  vfio_iommu_spapr_register_memory reg{24, 0, ram.ua(), ram.size()};
  EXPECT_TRUE(container->ioctl(as, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, reinterpret_cast<unsigned long>(&reg)));
  for (Group* g : groups) (*host)->release_group(*g);
  container.reset();
  EXPECT_EQ(as.locked_memory().locked_pages(), 0u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nv2pt::vfio
