#pragma once
// How many CUDA devices this machine has, counted in a child process so that the test
// process, which forks ranks that use CUDA, never starts CUDA itself (a child of a process
// with CUDA started cannot use it). No NVIDIA driver: 0, without forking.
#ifdef STARMESH_COMM_NCCL
#include <cuda_runtime_api.h>
#include <sys/wait.h>
#include <unistd.h>

namespace starmesh::test {

inline int cuda_devices() {
  static const int count = [] {
    if (::access("/dev/nvidiactl", F_OK) != 0) return 0;
    int fds[2];
    if (::pipe(fds) != 0) return 0;
    const pid_t pid = ::fork();
    if (pid == 0) {
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
      (void)!::write(fds[1], &n, sizeof n);
      ::_exit(0);
    }
    ::close(fds[1]);
    int n = 0;
    if (pid < 0 || ::read(fds[0], &n, sizeof n) != sizeof n) n = 0;
    ::close(fds[0]);
    if (pid > 0) ::waitpid(pid, nullptr, 0);
    return n;
  }();
  return count;
}

}  // namespace starmesh::test
#endif
