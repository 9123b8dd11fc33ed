// The benchmarks' clocks: wall time on the steady clock, and the calling thread's CPU time (user + system, exact:
// on a machine shared with builds the wall clock also counts preemption, the CPU clock only the work). Nothing of
// the model, so the preload client can use it too.
#pragma once

#include <chrono>
#include <ctime>

namespace nv2pt::bench {

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Runs f() and stores its wall and thread-CPU seconds; returns what f returned.
template <class F>
auto timed(double& wall_s, double& cpu_s, F&& f) {
  const double c0 = thread_cpu_s();
  const auto t0 = Clock::now();
  auto result = f();
  wall_s = seconds(t0, Clock::now());
  cpu_s = thread_cpu_s() - c0;
  return result;
}

}  // namespace nv2pt::bench
