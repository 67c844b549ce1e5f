#pragma once
// Runs the `starmesh` CLI as a child process under a time limit and collects its output.
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace starmesh::test {

struct Ran {
  int status = -1;
  std::string out;  // stdout (and stderr, unless the arguments redirect it)
  bool exited() const { return WIFEXITED(status); }
  int code() const { return WEXITSTATUS(status); }
  bool ok() const { return exited() && code() == 0; }
};

// `starmesh ARGS` through the shell (ARGS may redirect); `timeout` makes a hang exit 124.
inline Ran run_cli(const std::string& args, int limit_seconds = 20) {
  const std::string cmd = "timeout " + std::to_string(limit_seconds) + " " + STARMESH_CLI + " " + args;
  Ran r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  r.status = pclose(p);
  return r;
}

}  // namespace starmesh::test
