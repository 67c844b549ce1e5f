#include "generate_call.hpp"

#include "wire.hpp"

namespace starmesh::api {

bool Mailbox::add(const TokenChunk& chunk) {
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_) return false;
    if (batches_.empty() || batches_.back().progress || batches_.back().bytes() >= kMaxPushBytes)
      batches_.emplace_back();
    Batch& batch = batches_.back();
    batch.ids.insert(batch.ids.end(), chunk.ids.begin(), chunk.ids.end());
    batch.text += chunk.text;
    wake = kj::mv(wake_);
  }
  if (wake.get() != nullptr) wake->fulfill();
  return true;
}

void Mailbox::progress(const Progress& event) {
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || finished_) return;
    // A newer count of the same stage replaces one not sent yet; a new stage is never lost.
    if (batches_.empty() || !batches_.back().progress || batches_.back().progress->stage != event.stage)
      batches_.emplace_back();
    batches_.back().progress = event;
    wake = kj::mv(wake_);
  }
  if (wake.get() != nullptr) wake->fulfill();
}

void Mailbox::finish(Expected<GenerateSummary> result) {
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    finished_ = true;
    result_.emplace(std::move(result));
    wake = kj::mv(wake_);
  }
  if (wake.get() != nullptr) wake->fulfill();
}

void Mailbox::cancel() {
  bool running = false;
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    batches_.clear();
    running = !finished_;
  }
  if (running) token_->cancel();  // the service stops now, not at its next token
}

GenerateCall::GenerateCall(wire::TokenSink::Client sink, GenerateContext context, std::atomic<int64_t>& active)
    : sink_(kj::mv(sink)), context_(context), active_(active) {
  ++active_;
}

GenerateCall::~GenerateCall() {
  mailbox_->cancel();
  --active_;
}

kj::Promise<void> GenerateCall::pump() {
  Mailbox::Batch batch;
  std::optional<Expected<GenerateSummary>> result;
  kj::Maybe<kj::Promise<void>> wake;
  {
    std::lock_guard lock(mailbox_->mutex_);
    if (!mailbox_->batches_.empty()) {
      batch = std::move(mailbox_->batches_.front());
      mailbox_->batches_.pop_front();
    } else if (mailbox_->result_) {
      result = std::move(mailbox_->result_);
      mailbox_->result_.reset();
    } else {
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      mailbox_->wake_ = kj::mv(paf.fulfiller);
      wake = kj::mv(paf.promise);
    }
  }
  KJ_IF_MAYBE (w, wake) return kj::mv(*w).then([this] { return pump(); });
  if (result) return finish(std::move(*result));

  if (batch.progress) {
    auto event = sink_.progressRequest();
    to_wire(*batch.progress, event.initEvent());
    return after(event.send());
  }
  auto push = sink_.pushRequest();
  auto list = push.initIds(unsigned(batch.ids.size()));
  for (size_t i = 0; i < batch.ids.size(); ++i) list.set(unsigned(i), batch.ids[i]);
  push.setText(kj::StringPtr(batch.text.data(), batch.text.size()));
  return after(push.send());
}

kj::Promise<void> GenerateCall::after(kj::Promise<void> sent) {
  // Resolves when flow control allows the next call; a failed one (the client threw, or is
  // gone) is reported here or on a later one.
  return sent.then([this] { return pump(); },
                   [this](kj::Exception&&) {
                     sink_failed_ = true;
                     mailbox_->cancel();
                     return pump();
                   });
}

kj::Promise<void> GenerateCall::finish(Expected<GenerateSummary> result) {
  if (!result) return to_exception(result.error());
  kj::Promise<void> done = kj::READY_NOW;
  if (!sink_failed_) done = sink_.doneRequest().send().then([](auto&&) {}, [](kj::Exception&&) {});
  return done.then([this, summary = std::move(*result)] { to_wire(summary, context_.getResults().initSummary()); });
}

}  // namespace starmesh::api
