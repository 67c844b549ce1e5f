#pragma once
// Cancellation from the caller's side of generate_service_i: the door (the API) cancels when
// its client goes away, and the service stops the request at once, even before its first
// token (phase 1 on every host). In process only: it travels on no wire.
#include <functional>
#include <mutex>

namespace starmesh {

class CancelToken {
 public:
  // Cancels (once): runs the registered action, if any, on this thread.
  void cancel() {
    std::function<void()> run;
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return;
      cancelled_ = true;
      run = std::move(action_);
    }
    if (run) run();
  }
  bool cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }
  // What the service does on cancel; runs at once (here) if the token is cancelled already.
  void on_cancel(std::function<void()> action) {
    {
      std::lock_guard lock(mutex_);
      if (!cancelled_) {
        action_ = std::move(action);
        return;
      }
    }
    action();
  }

 private:
  mutable std::mutex mutex_;
  bool cancelled_ = false;
  std::function<void()> action_;
};

}  // namespace starmesh
