// ApiClient: an EzRpcClient on the calling thread's kj event loop, and a local TokenSink that
// hands pushed tokens to the caller's callback.
#include "starmesh/api/api_client.hpp"

#include <capnp/ez-rpc.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include <thread>

#include "wire.hpp"

namespace starmesh {
namespace {

constexpr auto kConnectTimeout = 10 * kj::SECONDS;

// Receives the pushes of one generate call. Throwing from push is how the client cancels.
class TokenSinkImpl final : public api::wire::TokenSink::Server {
 public:
  TokenSinkImpl(const std::function<bool(const TokenChunk&)>& on_tokens,
                const std::function<void(const Progress&)>& on_progress)
      : on_tokens_(on_tokens), on_progress_(on_progress) {}

  bool cancelled() const { return cancelled_; }
  const std::string& callback_error() const { return callback_error_; }

 protected:
  kj::Promise<void> push(PushContext context) override {
    if (cancelled_) return KJ_EXCEPTION(FAILED, "cancelled by the client");
    auto params = context.getParams();
    TokenChunk chunk;
    for (int32_t id : params.getIds()) chunk.ids.push_back(id);
    auto text = params.getText();
    chunk.text.assign(text.begin(), text.end());
    bool go = false;
    try {
      go = on_tokens_(chunk);
    } catch (const std::exception& e) {
      callback_error_ = std::string("the on_tokens callback threw: ") + e.what();
    }
    if (!go) {
      cancelled_ = true;
      return KJ_EXCEPTION(FAILED, "cancelled by the client");
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext) override { return kj::READY_NOW; }

  kj::Promise<void> progress(ProgressContext context) override {
    auto event = api::from_wire(context.getParams().getEvent());
    if (!event || !on_progress_ || cancelled_) return kj::READY_NOW;
    try {
      on_progress_(*event);
    } catch (const std::exception& e) {
      callback_error_ = std::string("the on_progress callback threw: ") + e.what();
      cancelled_ = true;
      return KJ_EXCEPTION(FAILED, "cancelled by the client");
    }
    return kj::READY_NOW;
  }

 private:
  const std::function<bool(const TokenChunk&)>& on_tokens_;
  const std::function<void(const Progress&)>& on_progress_;
  bool cancelled_ = false;
  std::string callback_error_;
};

}  // namespace

struct ApiClient::Impl {
  std::string address;
  capnp::EzRpcClient rpc;
  api::wire::Starmesh::Client main;
  std::thread::id owner = std::this_thread::get_id();

  explicit Impl(const std::string& a) : address(a), rpc(a), main(nullptr) {}

  Status check_thread() const {
    if (std::this_thread::get_id() == owner) return Status::ok();
    return make_error("an ApiClient is used on the thread that connected it; connect one per thread");
  }
};

ApiClient::ApiClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApiClient::~ApiClient() = default;

const std::string& ApiClient::address() const { return impl_->address; }

Expected<std::unique_ptr<ApiClient>> ApiClient::connect(const std::string& address, const std::string& credentials) {
  try {
    auto impl = std::make_unique<Impl>(address);
    auto& rpc = impl->rpc;
    // The login opens the connection: a server that is not there fails it.
    auto login = rpc.getMain<api::wire::Gateway>().loginRequest();
    login.setCredentials(credentials);
    auto reply = rpc.getIoProvider().getTimer().timeoutAfter(kConnectTimeout, login.send()).wait(rpc.getWaitScope());
    impl->main = reply.getStarmesh();
    return std::unique_ptr<ApiClient>(new ApiClient(std::move(impl)));
  } catch (const kj::Exception& e) {
    Error why = api::error_of(e);
    if (why.code == ErrorCode::unauthenticated) return with_prefix(address + ": ", std::move(why));
    return with_prefix("cannot reach a starmesh server at '" + address + "': ", std::move(why));
  }
}

Expected<ServerInfo> ApiClient::info() {
  SM_TRY(impl_->check_thread());
  try {
    auto reply = impl_->main.infoRequest().send().wait(impl_->rpc.getWaitScope());
    return api::from_wire(reply.getInfo());
  } catch (const kj::Exception& e) {
    return api::error_of(e);
  }
}

Status ApiClient::drop_context(const ContextId& id) {
  SM_TRY(impl_->check_thread());
  try {
    auto call = impl_->main.dropContextRequest();
    call.setContextKey(id.hex());
    call.send().wait(impl_->rpc.getWaitScope());
    return {};
  } catch (const kj::Exception& e) {
    return api::error_of(e);
  }
}

Expected<GenerateSummary> ApiClient::generate(const GenerateRequest& request,
                                              const std::function<bool(const TokenChunk&)>& on_tokens,
                                              const std::function<void(const Progress&)>& on_progress) {
  SM_TRY(impl_->check_thread());
  try {
    auto call = impl_->main.generateRequest();
    SM_TRY(api::to_wire(request, call.initRequest()));
    call.getRequest().setProgress(bool(on_progress));
    auto sink = kj::heap<TokenSinkImpl>(on_tokens, on_progress);
    TokenSinkImpl& sink_ref = *sink;  // alive while `call` holds the capability, and after
    api::wire::TokenSink::Client sink_cap = kj::mv(sink);
    call.setSink(sink_cap);
    auto reply = call.send().wait(impl_->rpc.getWaitScope());
    if (!sink_ref.callback_error().empty()) return Error{sink_ref.callback_error()};
    return api::from_wire(reply.getSummary());
  } catch (const kj::Exception& e) {
    return api::error_of(e);
  }
}

}  // namespace starmesh
