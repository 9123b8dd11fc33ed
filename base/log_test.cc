#include "base/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

namespace nv2pt {
namespace {

// What log_line writes to fd 2 while `body` runs.
template <class F>
std::string captured_stderr(F body) {
  int pipefd[2];
  EXPECT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
  const int saved = dup(STDERR_FILENO);
  dup2(pipefd[1], STDERR_FILENO);
  body();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(pipefd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  return out;
}

TEST(Log, OneWholeLineWithThePrefixAndLongMessagesCut) {
  EXPECT_EQ(captured_stderr([] { log_line("vfio-pci: no ATSD"); }), "nv2pt: vfio-pci: no ATSD\n");
  const std::string line = captured_stderr([] { log_line(std::string(5000, 'x')); });
  EXPECT_EQ(line.size(), kMaxLogLine);
  EXPECT_EQ(line.substr(0, 8), "nv2pt: x");
  EXPECT_EQ(line.back(), '\n');
}

}  // namespace
}  // namespace nv2pt
