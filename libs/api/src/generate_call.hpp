#pragma once
// One `generate` call being served: the mailbox that the service's threads write tokens and the
// result into, and the pump on the kj loop thread that moves them to the client's TokenSink.
//
// The service never waits for the loop: a callback locks the mailbox, appends, and fulfills the
// cross-thread fulfiller the pump left there when it went to sleep. The pump sends one push at
// a time as the stream's flow control allows; tokens that arrive meanwhile go out together in
// the next pushes. Cancellation (the client throws from push, drops the call, or disconnects; the
// server stops) marks the mailbox cancelled, so the service's next on_tokens returns false.
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "starmesh.capnp.h"
#include "starmesh/service/generate_service.hpp"

namespace starmesh::api {

using GenerateContext = capnp::CallContext<wire::Starmesh::GenerateParams, wire::Starmesh::GenerateResults>;

// Shared by the loop thread and the service's threads; holds no capability, so whichever
// thread drops the last reference may destroy it.
class Mailbox {
 public:
  // Tokens held back are batched into pushes of about this size (text + 4 bytes per id), so no
  // message grows past what a reader accepts however far the client falls behind.
  static constexpr size_t kMaxPushBytes = 64 << 10;

  // on_tokens: false once cancelled.
  bool add(const TokenChunk& chunk);
  // on_progress: queued in order with the tokens; an event not sent yet is replaced by the
  // next one of the same stage (a slow client gets the latest count of each stage, and the
  // queue stays bounded: stages only go forward).
  void progress(const Progress& event);
  // on_done: the first call counts.
  void finish(Expected<GenerateSummary> result);
  // Cancels: on_tokens answers false from now on, and the token tells the service.
  void cancel();
  // Goes with the request to the service (GenerateRequest::cancel).
  const std::shared_ptr<CancelToken>& token() const { return token_; }

 private:
  friend class GenerateCall;
  std::mutex mutex_;
  struct Batch {
    std::vector<int32_t> ids;
    std::string text;
    std::optional<Progress> progress;  // set: this entry is a progress event, not tokens
    size_t bytes() const { return text.size() + 4 * ids.size(); }
  };
  std::deque<Batch> batches_;  // tokens and progress events not sent yet, oldest first
  std::optional<Expected<GenerateSummary>> result_;
  bool finished_ = false;
  bool cancelled_ = false;
  std::shared_ptr<CancelToken> token_ = std::make_shared<CancelToken>();
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;  // set while the pump sleeps
};

// Lives on the loop thread, owned by the promise returned to the RPC system: dropping that
// promise (cancellation, disconnection, shutdown) destroys it and cancels the mailbox.
class GenerateCall {
 public:
  GenerateCall(wire::TokenSink::Client sink, GenerateContext context, std::atomic<int64_t>& active);
  ~GenerateCall();
  GenerateCall(const GenerateCall&) = delete;
  GenerateCall& operator=(const GenerateCall&) = delete;

  const std::shared_ptr<Mailbox>& mailbox() const { return mailbox_; }
  // Pushes tokens until the service is done, then calls sink.done() and fills the results, or
  // fails with the service's error.
  kj::Promise<void> run() { return pump(); }

 private:
  kj::Promise<void> pump();
  kj::Promise<void> after(kj::Promise<void> sent);  // the next pump once a sink call is through
  kj::Promise<void> finish(Expected<GenerateSummary> result);

  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  wire::TokenSink::Client sink_;
  GenerateContext context_;
  std::atomic<int64_t>& active_;
  bool sink_failed_ = false;
};

}  // namespace starmesh::api
