#include "starmesh/launch/local_group.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

namespace starmesh {

// Frames, child to parent: kind (1 byte: 'G' allgather blob, 'R' result), length (u32),
// bytes (the result is empty for ok, else the error message). Parent to child, answering
// an allgather: count (u32), then count times length (u32) and bytes.
namespace {

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

bool read_all(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= size_t(r);
  }
  return true;
}

bool write_frame(int fd, char kind, std::span<const uint8_t> bytes) {
  uint8_t head[5] = {uint8_t(kind)};
  const uint32_t n = uint32_t(bytes.size());
  std::memcpy(head + 1, &n, 4);
  return write_all(fd, head, 5) && (bytes.empty() || write_all(fd, bytes.data(), bytes.size()));
}

bool read_blob(int fd, std::vector<uint8_t>& out) {
  uint32_t n = 0;
  if (!read_all(fd, &n, 4)) return false;
  out.resize(n);
  return n == 0 || read_all(fd, out.data(), n);
}

struct Child {
  pid_t pid = -1;
  int up = -1;    // parent reads the child's frames
  int down = -1;  // parent writes allgather answers
  bool eof = false;
  std::optional<std::string> result;  // "" for ok
  std::optional<std::vector<uint8_t>> blob;
  std::optional<int> wait_status;
  bool killed = false;
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string fate(const Child& c) {
  if (c.killed) return "was killed at the timeout";
  if (!c.wait_status) return "did not exit";
  const int s = *c.wait_status;
  if (WIFSIGNALED(s))
    return "was killed by signal " + std::to_string(WTERMSIG(s)) + " (" + strsignal(WTERMSIG(s)) + ")";
  if (WIFEXITED(s)) return "exited with code " + std::to_string(WEXITSTATUS(s)) + " without a result";
  return "ended oddly";
}

}  // namespace

Expected<std::vector<std::vector<uint8_t>>> LocalBootstrap::allgather(std::span<const uint8_t> blob) {
  if (!write_frame(to_parent_, 'G', blob)) return make_error("bootstrap rank ", rank_, ": lost the parent process");
  uint32_t count = 0;
  if (!read_all(from_parent_, &count, 4) || count != uint32_t(size_))
    return make_error("bootstrap rank ", rank_, ": the allgather was abandoned (a rank failed or the parent left)");
  std::vector<std::vector<uint8_t>> all(count);
  for (auto& b : all)
    if (!read_blob(from_parent_, b))
      return make_error("bootstrap rank ", rank_, ": the allgather answer was cut short");
  return all;
}

std::vector<Status> run_local_group(int size, const std::function<Status(LocalBootstrap&)>& body,
                                    std::chrono::milliseconds timeout) {
  if (size < 1) return {make_error("run_local_group: size ", size, " < 1")};
  std::fflush(stdout);  // else the children flush the parent's buffered output again
  std::fflush(stderr);
  struct sigaction ignore {
  }, old_pipe{};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old_pipe);  // a dead child's pipe must not kill the parent

  std::vector<Child> children(static_cast<size_t>(size));
  std::vector<Status> out(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    int up[2], down[2];
    if (::pipe(up) != 0 || ::pipe(down) != 0) {
      out[size_t(r)] = make_error("rank ", r, ": pipe() failed: ", std::strerror(errno));
      size = r;
      break;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {  // the child: run the body, report, leave without running the parent's atexit
      // A crash must reach the parent as a signal, not run the parent's handlers (a test
      // framework's crash report) in the child.
      for (int sig : {SIGSEGV, SIGABRT, SIGFPE, SIGILL, SIGBUS, SIGTERM, SIGINT, SIGPIPE}) ::signal(sig, SIG_DFL);
      for (int q = 0; q < r; ++q) {
        close_fd(children[size_t(q)].up);
        close_fd(children[size_t(q)].down);
      }
      ::close(up[0]);
      ::close(down[1]);
      Status s;
      {
        LocalBootstrap bootstrap(r, int(children.size()), up[1], down[0]);
        try {
          s = body(bootstrap);
        } catch (const std::exception& e) {
          s = make_error("exception: ", e.what());
        } catch (...) {  // e.g. a test framework's failed assertion: it must not unwind into the parent's code
          s = make_error("an exception that is not a std::exception (a failed test assertion?)");
        }
      }
      const std::string& msg = s.message();
      write_frame(up[1], 'R', {reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
      std::fflush(stdout);
      std::fflush(stderr);
      ::_exit(0);
    }
    ::close(up[1]);
    ::close(down[0]);
    children[size_t(r)].up = up[0];
    children[size_t(r)].down = down[1];
    if (pid < 0) {
      close_fd(children[size_t(r)].up);
      close_fd(children[size_t(r)].down);
      out[size_t(r)] = make_error("rank ", r, ": fork() failed: ", std::strerror(errno));
      size = r;
      break;
    }
    children[size_t(r)].pid = pid;
  }
  children.resize(size_t(size));  // only those started

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string group_failure;
  auto kill_all = [&] {
    for (Child& c : children)
      if (!c.eof && c.pid > 0) {
        ::kill(c.pid, SIGKILL);
        c.killed = true;
      }
  };
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<size_t> who;
    for (size_t i = 0; i < children.size(); ++i)
      if (!children[i].eof) {
        fds.push_back({children[i].up, POLLIN, 0});
        who.push_back(i);
      }
    if (fds.empty()) break;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill_all();
      break;
    }
    const int n = ::poll(fds.data(), fds.size(), int(std::min<int64_t>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) {
      group_failure = std::string("poll() failed: ") + std::strerror(errno);
      kill_all();
      break;
    }
    for (size_t k = 0; k < fds.size() && n > 0; ++k) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = children[who[k]];
      char kind = 0;
      std::vector<uint8_t> bytes;
      if (!read_all(c.up, &kind, 1) || !read_blob(c.up, bytes)) {
        c.eof = true;
        close_fd(c.up);
      } else if (kind == 'G') {
        c.blob = std::move(bytes);
      } else {
        c.result = std::string(bytes.begin(), bytes.end());
      }
    }
    // An allgather round completes when every rank has posted; it can never complete once a
    // rank has left.
    bool any = false, all = true;
    for (const Child& c : children) {
      any = any || c.blob.has_value();
      all = all && c.blob.has_value();
    }
    if (all) {
      std::vector<uint8_t> answer(4);
      const uint32_t count = uint32_t(children.size());
      std::memcpy(answer.data(), &count, 4);
      for (Child& c : children) {
        const uint32_t len = uint32_t(c.blob->size());
        answer.insert(answer.end(), reinterpret_cast<const uint8_t*>(&len), reinterpret_cast<const uint8_t*>(&len) + 4);
        answer.insert(answer.end(), c.blob->begin(), c.blob->end());
      }
      for (Child& c : children) {
        write_all(c.down, answer.data(), answer.size());
        c.blob.reset();
      }
    } else if (any) {
      for (size_t i = 0; i < children.size() && group_failure.empty(); ++i)
        if (!children[i].blob && (children[i].eof || children[i].result))
          group_failure = "rank " + std::to_string(i) + " left while the others waited for it in an allgather";
      if (!group_failure.empty()) {
        kill_all();
        break;
      }
    }
  }

  for (Child& c : children) {
    int status = 0;
    if (c.pid > 0 && ::waitpid(c.pid, &status, 0) == c.pid) c.wait_status = status;
    close_fd(c.up);
    close_fd(c.down);
  }
  sigaction(SIGPIPE, &old_pipe, nullptr);

  for (size_t i = 0; i < children.size(); ++i) {
    const Child& c = children[i];
    if (c.result && c.result->empty() && !c.killed) continue;
    std::string msg = "rank " + std::to_string(i) + ": ";
    if (c.result && !c.result->empty())
      msg += *c.result;
    else if (c.killed && !c.result)
      msg += group_failure.empty() ? "did not finish within " + std::to_string(timeout.count()) + " ms (killed)"
                                   : std::string("killed when the group failed");
    else
      msg += fate(c);
    if (!group_failure.empty()) msg += " [group: " + group_failure + "]";
    out[i] = Error{msg};
  }
  return out;
}

Expected<std::unique_ptr<UcxTransport>> connect_ucx(LocalBootstrap& bootstrap, const UcxOptions& options,
                                                    bool authenticated) {
  SM_ASSIGN(context, UcxContext::create(options));
  SM_ASSIGN(addresses, bootstrap.allgather(context.local_address()));
  std::optional<GroupKey> key;
  if (authenticated) {  // rank 0's key for everyone, through the parent's pipes
    MessageKey mine{};
    if (bootstrap.rank() == 0) {
      SM_ASSIGN(made, random_message_key());
      mine = made;
    }
    SM_ASSIGN(keys, bootstrap.allgather(mine));
    if (keys[0].size() != mine.size()) return make_error("connect_ucx: rank 0 sent a key of ", keys[0].size(), " B");
    key.emplace();
    std::copy(keys[0].begin(), keys[0].end(), key->key.begin());
    key->session = 1;
  }
  return context.connect(bootstrap.rank(), bootstrap.size(), addresses, key);
}

}  // namespace starmesh
