#pragma once
// A child process with its stdout and stderr on pipes, for tests that run the starmesh CLI.
#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace starmesh::test {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the arguments; throws std::runtime_error if it cannot.
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();  // kills and reaps it if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Reads stdout until at least one byte came or the timeout passed; returns what came.
  std::string read_some_stdout(std::chrono::milliseconds timeout);
  // Reads both pipes to the end and reaps the process; returns the exit code (-signal if killed).
  int wait(std::chrono::milliseconds timeout);
  void kill_now();  // SIGKILL, then reap

  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  int status_ = 0;
};

}  // namespace starmesh::test
