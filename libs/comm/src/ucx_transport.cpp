#include "starmesh/comm/ucx_transport.hpp"

#include <sched.h>
#include <ucp/api/ucp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <utility>

namespace starmesh {

using Clock = std::chrono::steady_clock;

namespace detail {
// An authenticated message's trailer and the two iov entries (payload, trailer) that send or
// receive it as one message: UCX reads them until the transfer completes.
struct Wire {
  Trailer trailer{};
  ucp_dt_iov_t iov[2]{};
};

// One transfer of an exchange. A receive first waits for its message to be probed (nothing
// is posted, so nothing needs cancelling), then is matched with its size known: a message
// of another size goes into `scratch`, so its sender completes and the error names both;
// one larger than mismatch_limit() is not taken at all (`refused`) and its peer is cut off,
// so a peer cannot make this process allocate what it announces. In an authenticated group
// every message is payload + trailer (`wire`), and a receive is opened once it completes.
struct Op {
  enum State : uint8_t { probing, in_flight, done } state = in_flight;
  void* request = nullptr;
  ucs_status_t status = UCS_OK;
  size_t length = 0;     // receives: the size of the matched message (trailer included)
  bool matched = false;  // receives: a message was taken (into the tensor or scratch)
  bool refused = false;
  std::vector<uint8_t> scratch;
  std::unique_ptr<Wire> wire;  // authenticated groups only
  // A transfer to self in an authenticated group goes as one contiguous copy (in `scratch`):
  // UCX 1.13's self transport never completes an iov message large enough for rendezvous.
  bool staged = false;
  Status opened;  // receives: what opening the message said
};

// One endpoint to another process (or to this one), shared by every group that has a rank
// there. UCX pairs the endpoints two workers make to each other in the order each made
// them, and a rendezvous reply goes to the endpoint paired with its sender's: endpoints made
// and closed per group paired one group's endpoint with another's, and once that other group
// closed its own, rendezvous messages of the first went unanswered (the mesh stalled with
// several requests at once). So a process makes one endpoint per peer and keeps it.
struct UcxEndpoint {
  ucp_ep_h ep = nullptr;
  bool peer_failure_mode = false;  // failures reach on_error, and the endpoint must then be force-closed
  std::string failed;              // why UCX gave up on it; empty while it is fine (under the worker lock)
  bool parked = false;             // a transfer on it was given up at a deadline and may never finish

  static void on_error(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* self = static_cast<UcxEndpoint*>(arg);
    if (self->failed.empty())
      self->failed = std::string("UCX reported the connection failed: ") + ucs_status_string(status);
  }
};

// Transfers given up at a deadline that UCX may still complete: their ops (which its
// callbacks write to, and which own the scratch and trailer buffers) and tensors stay alive
// as long as the worker (released after the destructor body, so after ucp_worker_destroy).
// (A moved vector keeps its elements where they are, so UCX's pointers to the ops stay good.)
struct ParkedExchange {
  std::vector<Op> ops;
  std::vector<Tensor> tensors;
};

// The UCP context and worker of one process, shared by its groups.
struct UcxWorker {
  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  std::mutex mu;  // the worker is SERIALIZED: every UCP call on it holds this lock
  std::vector<uint8_t> address;
  std::string config;
  bool peer_failure_mode = false;  // endpoints to others use UCP_ERR_HANDLING_MODE_PEER
  Clock::duration spin_before_yield{};
  std::set<uint32_t> groups;  // live group ids, under mu
  // Endpoints by the peer's worker address, under mu. One that failed is replaced by the next
  // group that needs it; idle ones are closed when there are too many (workers come and go).
  std::map<std::vector<uint8_t>, std::shared_ptr<UcxEndpoint>> endpoints;
  std::vector<std::shared_ptr<UcxEndpoint>> closed;  // kept until the worker is destroyed
  std::vector<ParkedExchange> parked;

  ~UcxWorker();
};
}  // namespace detail

namespace {

using detail::Op;
constexpr uint64_t kMaxUserTag = 0xffffffffull;  // 32 bits; the rest of the UCP tag is group and rank
constexpr uint64_t kFullMask = ~uint64_t(0);
constexpr auto kFinishGrace = std::chrono::milliseconds(50);  // for transfers caught mid-way at a deadline
// A receive that took its message before the deadline has it arriving from a live sender:
// dropping it would lose the message (UCX has taken it off the queue), so it may finish
// for this long. On 2 loaded cores a rendezvous took more than 50 ms: the shard loop's
// header, taken at the end of a wait slice and dropped, left a request waiting for a step
// that had been sent (the chaos test, about one run in four).
constexpr auto kMatchedGrace = std::chrono::milliseconds(5000);
constexpr auto kCloseGrace = std::chrono::milliseconds(2000);  // for closed endpoints to release requests
// Endpoints a process keeps before it closes those no group uses (of peers that left).
constexpr size_t kMaxEndpoints = 1024;

uint64_t wire_tag(uint32_t group, int source, uint64_t tag) {
  return (uint64_t(group) << 44) | (uint64_t(uint32_t(source) & 0xfffu) << 32) | tag;
}

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Bytes on the wire for a payload of `bytes`.
size_t wire_size(const Op& op, size_t bytes) { return bytes + (op.wire ? kTrailerBytes : 0); }

// "1000 B": the payload a message of `length` wire bytes carried, for errors.
std::string payload_text(const Op& op, size_t length) {
  if (!op.wire) return std::to_string(length) + " B";
  if (length < kTrailerBytes)
    return std::to_string(length) + " B on the wire (less than its " + std::to_string(kTrailerBytes) +
           " B authentication trailer)";
  return std::to_string(length - kTrailerBytes) + " B";
}

// Points `p` at the payload and trailer of `wire` as one message; returns the buffer for nbx.
void* as_iov(ucp_request_param_t& p, detail::Wire& wire, void* payload, size_t bytes) {
  wire.iov[0] = {payload, bytes};
  wire.iov[1] = {wire.trailer.data(), wire.trailer.size()};
  p.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_iov();
  return wire.iov;
}

// The largest message of the wrong size a receive takes into scratch: twice what it expected
// (the exchange committed that much already), at least 64 KiB. UCX 1.13 cannot take a
// rendezvous message truncated (the transfer never completes), so larger ones are refused.
size_t mismatch_limit(size_t expected) { return std::max<size_t>(2 * expected, size_t(64) << 10); }

void on_send(void*, ucs_status_t status, void* user) {
  auto* op = static_cast<Op*>(user);
  op->state = Op::done;
  op->status = status;
}

void on_recv(void*, ucs_status_t status, const ucp_tag_recv_info_t*, void* user) {
  auto* op = static_cast<Op*>(user);
  op->state = Op::done;
  op->status = status;
}

ucp_request_param_t request_param(Op& op) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  p.user_data = &op;
  p.memory_type = UCS_MEMORY_TYPE_HOST;
  return p;
}

// Records what nbx returned: a request to wait for, or an immediate completion / failure.
void started(Op& op, ucs_status_ptr_t r) {
  if (UCS_PTR_IS_PTR(r)) {
    op.request = r;
    op.state = Op::in_flight;
  } else {
    op.state = Op::done;
    op.status = UCS_PTR_STATUS(r);
  }
}

// If the message for `op` has arrived, matches it and starts receiving it.
void try_match(ucp_worker_h worker, Op& op, const Transfer& t, uint64_t tag) {
  ucp_tag_recv_info_t info{};
  const size_t expected = wire_size(op, t.tensor.nbytes());
  // Look first, take after: a message too large to take stays in UCX's queue (for a
  // rendezvous message only its header is here), and the exchange fails naming both sizes.
  if (ucp_tag_probe_nb(worker, tag, kFullMask, 0, &info) == nullptr) return;
  if (info.length != expected && info.length > mismatch_limit(expected)) {
    op.state = Op::done;
    op.length = info.length;
    op.refused = true;
    op.status = UCS_ERR_MESSAGE_TRUNCATED;
    return;
  }
  ucp_tag_message_h msg = ucp_tag_probe_nb(worker, tag, kFullMask, 1, &info);
  if (msg == nullptr) return;
  op.length = info.length;
  op.matched = true;
  ucp_request_param_t p = request_param(op);
  p.cb.recv = on_recv;
  void* into = t.tensor.data();
  size_t count = info.length;
  if (info.length != expected) {
    op.scratch.resize(std::max<size_t>(info.length, 1));
    into = op.scratch.data();
  } else if (op.staged) {
    op.scratch.resize(info.length);
    into = op.scratch.data();
  } else if (op.wire) {
    into = as_iov(p, *op.wire, t.tensor.data(), t.tensor.nbytes());
    count = 2;
  }
  started(op, ucp_tag_msg_recv_nbx(worker, into, count, msg, &p));
}

// Opens every receive that took its message whole (an authenticated group's): a message that
// fails is zeroed, so no caller reads it, even one that looks at buffers after an error.
void open_received(GroupAuth* auth, std::span<const Transfer> transfers, std::span<Op> ops) {
  if (!auth) return;
  for (size_t i = 0; i < ops.size(); ++i) {
    const Transfer& t = transfers[i];
    Op& op = ops[i];
    if (t.kind != TransferKind::recv || op.state != Op::done || !op.matched || op.status != UCS_OK ||
        op.length != wire_size(op, t.tensor.nbytes()))
      continue;
    const size_t n = t.tensor.nbytes();
    const auto* bytes = static_cast<const uint8_t*>(op.staged ? op.scratch.data() : t.tensor.data());
    if (op.staged) std::memcpy(op.wire->trailer.data(), bytes + n, kTrailerBytes);
    op.opened = auth->open(t.peer, t.tag, std::span<const uint8_t>(bytes, n), op.wire->trailer);
    if (n == 0) continue;
    if (!op.opened)
      std::memset(t.tensor.data(), 0, n);
    else if (op.staged)
      std::memcpy(t.tensor.data(), bytes, n);
  }
}

// Progresses until every op in `ops` is done or `until` passes.
void progress_while_in_flight(ucp_worker_h worker, std::span<Op> ops, Clock::time_point until) {
  for (;;) {
    if (std::none_of(ops.begin(), ops.end(), [](const Op& op) { return op.state == Op::in_flight; })) return;
    if (Clock::now() >= until) return;
    ucp_worker_progress(worker);
  }
}

}  // namespace

struct UcxTransport::Peer {
  int rank = 0;
  std::shared_ptr<detail::UcxEndpoint> link;  // the process's endpoint to that rank's worker
  std::string broken;  // why this rank is unusable in this group; empty while it is fine (under the worker lock)

  // Why no more transfers go to this rank in this group; empty if they may. (A live group's
  // endpoint is closed only once it failed: idle ones closed are those no group holds.)
  std::string unusable() const { return broken.empty() ? link->failed : broken; }
};

namespace detail {

// Closes endpoints and waits (a bounded time) for the closes to finish. One that can be
// force-closed (it reports peer failures) is, when it failed or has a transfer given up on
// (UCX cancels it: a worker may not be destroyed with transfers pending on an endpoint);
// else it first flushes what is queued to it, which also lets a connection still being
// made finish (forcing that one, UCX 1.13 can abort when the peer is gone). Under the
// worker lock.
void close_endpoints(ucp_worker_h worker, std::span<const std::shared_ptr<UcxEndpoint>> links) {
  std::vector<void*> closing;
  for (const auto& link : links) {
    if (!link->ep) continue;
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = link->peer_failure_mode && (link->parked || !link->failed.empty()) ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    void* r = ucp_ep_close_nbx(link->ep, &p);
    link->ep = nullptr;
    if (UCS_PTR_IS_PTR(r)) closing.push_back(r);
  }
  const auto until = Clock::now() + kCloseGrace;
  while (Clock::now() < until && std::any_of(closing.begin(), closing.end(),
                                             [](void* r) { return ucp_request_check_status(r) == UCS_INPROGRESS; }))
    ucp_worker_progress(worker);
  for (void* r : closing) ucp_request_free(r);  // an unfinished close is released when it completes
}

UcxWorker::~UcxWorker() {
  if (worker) {
    std::vector<std::shared_ptr<UcxEndpoint>> links;
    for (auto& [address, link] : endpoints) links.push_back(link);
    close_endpoints(worker, links);
    ucp_worker_destroy(worker);
  }
  if (context) ucp_cleanup(context);
}

// The endpoint to the worker at `address`: the one this process has, else a new one (which
// replaces one that failed). Under the worker lock.
Expected<std::shared_ptr<UcxEndpoint>> endpoint_to(UcxWorker& w, const std::vector<uint8_t>& address, bool self) {
  auto it = w.endpoints.find(address);
  if (it != w.endpoints.end() && it->second->ep && it->second->failed.empty()) return it->second;
  std::vector<std::shared_ptr<UcxEndpoint>> retired;
  if (it != w.endpoints.end()) {
    retired.push_back(it->second);  // groups still holding it see it failed
    w.endpoints.erase(it);
  }
  if (w.endpoints.size() >= kMaxEndpoints) {  // peers that left: close those no group uses
    for (auto i = w.endpoints.begin(); i != w.endpoints.end();) {
      if (i->second.use_count() == 1) {
        retired.push_back(i->second);
        i = w.endpoints.erase(i);
      } else {
        ++i;
      }
    }
  }
  close_endpoints(w.worker, retired);
  // UCX may still report an error on one whose close did not finish: its callback's argument lives on.
  for (auto& link : retired) w.closed.push_back(std::move(link));
  auto link = std::make_shared<UcxEndpoint>();
  link->peer_failure_mode = w.peer_failure_mode && !self;
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep.address = reinterpret_cast<const ucp_address_t*>(address.data());
  ep.err_mode = link->peer_failure_mode ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  if (link->peer_failure_mode) {
    ep.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.err_handler.cb = &UcxEndpoint::on_error;
    ep.err_handler.arg = link.get();
  }
  ucs_status_t s = ucp_ep_create(w.worker, &ep, &link->ep);
  if (s != UCS_OK) {
    link->ep = nullptr;
    return make_error("could not make an endpoint: ", ucs_status_string(s), " (", w.config, ")");
  }
  w.endpoints.emplace(address, link);
  return link;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Context

Expected<UcxContext> UcxContext::create(const UcxOptions& options) {
  std::string tls;
  if (options.transports == "tcp")
    tls = "tcp,self";
  else if (options.transports == "shm")
    tls = "sm,self";  // posix, sysv, cma (cma alone cannot carry tags)
  else if (options.transports != "auto")
    return make_error("UCX transports '", options.transports, "' is not one of tcp, shm, auto");
  if (options.net_devices.empty()) return make_error("UCX net_devices is empty: use \"lo\", \"all\" or device names");

  ucp_config_t* config = nullptr;
  ucs_status_t s = ucp_config_read(nullptr, nullptr, &config);
  if (s != UCS_OK) return make_error("UCX: reading the configuration failed: ", ucs_status_string(s));
  auto w = std::make_shared<detail::UcxWorker>();
  w->spin_before_yield = std::max(options.spin_before_yield, std::chrono::microseconds(0));
  // UCX 1.13's shared-memory and self transports cannot report a failed peer; asking for
  // that mode would rule them out. TCP can: there a dead or stuck peer is detected and its
  // endpoint force-closed.
  w->peer_failure_mode = options.transports == "tcp";
  auto modify = [&](const char* key, const std::string& value) -> Status {
    ucs_status_t st = ucp_config_modify(config, key, value.c_str());
    if (st != UCS_OK) return make_error("UCX: setting ", key, "=", value, " failed: ", ucs_status_string(st));
    w->config += std::string(w->config.empty() ? "" : " ") + "UCX_" + key + "=" + value;
    return {};
  };
  Status st = tls.empty() ? Status{} : modify("TLS", tls);
  if (st) st = modify("NET_DEVICES", options.net_devices);
  if (st) {
    ucp_params_t params{};
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_TAG;
    s = ucp_init(&params, config, &w->context);
    if (s != UCS_OK)
      st = make_error("UCX: ucp_init with ", w->config, " failed: ", ucs_status_string(s),
                      " (are the transports and devices present on this machine?)");
  }
  ucp_config_release(config);
  if (!st) return Error{st.message()};

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  s = ucp_worker_create(w->context, &wp, &w->worker);
  if (s != UCS_OK) return make_error("UCX: creating the worker (", w->config, ") failed: ", ucs_status_string(s));

  ucp_address_t* address = nullptr;
  size_t length = 0;
  s = ucp_worker_get_address(w->worker, &address, &length);
  if (s != UCS_OK) return make_error("UCX: getting the worker address failed: ", ucs_status_string(s));
  const auto* bytes = reinterpret_cast<const uint8_t*>(address);
  w->address.assign(bytes, bytes + length);
  ucp_worker_release_address(w->worker, address);
  return UcxContext(std::move(w));
}

const std::vector<uint8_t>& UcxContext::local_address() const { return worker_->address; }

std::string UcxContext::describe() const { return worker_->config; }

Expected<std::unique_ptr<UcxTransport>> UcxContext::connect(int rank, int size,
                                                            const std::vector<std::vector<uint8_t>>& addresses,
                                                            const std::optional<GroupKey>& key, uint32_t group) {
  if (size < 1 || size > kMaxUcxRanks)
    return make_error("UCX connect: group size ", size, " is not in 1..", kMaxUcxRanks);
  if (group > kMaxUcxGroupId) return make_error("UCX connect: group id ", group, " is not in 0..", kMaxUcxGroupId);
  if (rank < 0 || rank >= size) return make_error("UCX connect: rank ", rank, " is not in 0..", size - 1);
  if (addresses.size() != size_t(size))
    return make_error("UCX connect: ", addresses.size(), " addresses for a group of ", size, " (one per rank)");
  for (int r = 0; r < size; ++r)
    if (addresses[size_t(r)].empty()) return make_error("UCX connect: the address of rank ", r, " is empty");
  std::unique_ptr<GroupAuth> auth;
  if (key) {
    SM_ASSIGN(made, GroupAuth::create(*key, rank, size));
    auth = std::make_unique<GroupAuth>(std::move(made));
  }

  std::unique_ptr<UcxTransport> t;
  Status st;
  {
    std::lock_guard lock(worker_->mu);
    if (!worker_->groups.insert(group).second)
      return make_error("UCX connect: group ", group, " is already live on this context: close it or pick another id");
    t.reset(new UcxTransport(worker_, rank, size, group, std::move(auth)));
    for (int r = 0; r < size && st; ++r) {
      auto& peer = *t->peers_.emplace_back(std::make_unique<UcxTransport::Peer>());
      peer.rank = r;
      auto link = detail::endpoint_to(*worker_, addresses[size_t(r)], r == rank);
      if (link)
        peer.link = std::move(*link);
      else
        st = make_error("UCX connect: rank ", rank, " to rank ", r, ": ", link.error().message);
    }
  }
  if (!st) return Error{st.message()};  // t's destructor gives up its group id
  return t;
}

// ---------------------------------------------------------------------------------------
// Transport

UcxTransport::UcxTransport(std::shared_ptr<detail::UcxWorker> worker, int rank, int size, uint32_t group,
                           std::unique_ptr<GroupAuth> auth)
    : worker_(std::move(worker)), rank_(rank), size_(size), group_(group), auth_(std::move(auth)) {}

// The endpoints stay with the process for the next groups; only the group id is given back.
UcxTransport::~UcxTransport() {
  std::lock_guard lock(worker_->mu);
  worker_->groups.erase(group_);
}

Status UcxTransport::exchange(std::span<const Transfer> transfers, Deadline deadline) {
  const auto start = Clock::now();
  auto where = [&](const Transfer& t) {
    return "ucx rank " + std::to_string(rank_) + " (group " + std::to_string(group_) + ") " + describe(t);
  };
  for (const Transfer& t : transfers) {
    if (t.peer < 0 || t.peer >= size_) return make_error(where(t), ": no such rank (group of ", size_, ")");
    if (t.tag > kMaxUserTag) return make_error(where(t), ": tags have 32 bits here, this one is larger");
    if (t.tensor.nbytes() > 0 && !t.tensor.defined()) return make_error(where(t), ": the tensor has no storage");
    if (t.tensor.device().kind != DeviceKind::cpu)
      return make_error(where(t), ": UCX moves host memory only (Debian's UCX has no CUDA); the tensor is on ",
                        to_string(t.tensor.device()), ": stage it through pinned host memory or use NCCL");
  }

  std::vector<Op> ops(transfers.size());  // moved into the worker's parked list if UCX may still write to them
  if (auth_) {                            // the sends' trailers, before taking the worker: hashing is the cost
    std::vector<GroupAuth::Send> sends;
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      ops[i].wire = std::make_unique<detail::Wire>();
      ops[i].staged = t.peer == rank_;
      if (t.kind == TransferKind::send)
        sends.push_back({t.peer, t.tag, {static_cast<const uint8_t*>(t.tensor.data()), t.tensor.nbytes()}});
    }
    SM_ASSIGN(trailers, auth_->seal(sends));
    for (size_t i = 0, k = 0; i < transfers.size(); ++i)
      if (transfers[i].kind == TransferKind::send) ops[i].wire->trailer = trailers[k++];
  }
  // Every rank a forged message came under is cut off; the first such is the error.
  auto refuse_all_forged = [&]() -> Status {
    Status first;
    for (size_t i = 0; i < ops.size(); ++i)
      if (!ops[i].opened) {
        Error e = refuse_forged(transfers[i], ops[i].opened);
        if (first) first = std::move(e);
      }
    return first;
  };
  std::unique_lock lock(worker_->mu);
  ucp_worker_h worker = worker_->worker;
  for (const Transfer& t : transfers) {
    if (const std::string why = peers_[size_t(t.peer)]->unusable(); !why.empty())
      return make_error(where(t), ": peer ", t.peer, " is unusable: ", why);
  }

  // Start everything, then wait for everything.
  for (size_t i = 0; i < transfers.size(); ++i) {
    const Transfer& t = transfers[i];
    Op& op = ops[i];
    if (t.kind == TransferKind::send) {
      ucp_request_param_t p = request_param(op);
      p.cb.send = on_send;
      const void* from = t.tensor.data();
      size_t count = t.tensor.nbytes();
      if (op.staged) {
        const size_t n = t.tensor.nbytes();
        op.scratch.resize(n + kTrailerBytes);
        if (n > 0) std::memcpy(op.scratch.data(), t.tensor.data(), n);
        std::memcpy(op.scratch.data() + n, op.wire->trailer.data(), kTrailerBytes);
        from = op.scratch.data();
        count = op.scratch.size();
      } else if (op.wire) {
        from = as_iov(p, *op.wire, t.tensor.data(), t.tensor.nbytes());
        count = 2;
      }
      started(op, ucp_tag_send_nbx(peers_[size_t(t.peer)]->link->ep, from, count, wire_tag(group_, rank_, t.tag), &p));
    } else {
      op.state = Op::probing;
      try_match(worker, op, t, wire_tag(group_, t.peer, t.tag));
    }
  }

  bool timed_out = false, was_cancelled = false;
  auto last_event = Clock::now();
  for (;;) {
    bool all_done = true;
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].state == Op::probing)
        try_match(worker, ops[i], transfers[i], wire_tag(group_, transfers[i].peer, transfers[i].tag));
      all_done = all_done && ops[i].state == Op::done;
    }
    if (all_done) break;
    const auto now = Clock::now();
    if (now >= deadline || cancelled()) {
      timed_out = true;
      was_cancelled = now < deadline;
      break;
    }
    const bool progressed = ucp_worker_progress(worker) != 0;
    // Between polls other threads of this process may reach the worker.
    lock.unlock();
    if (progressed)
      last_event = now;
    else if (now - last_event > worker_->spin_before_yield)
      sched_yield();
    lock.lock();
  }

  if (timed_out) {
    std::vector<size_t> late;
    std::vector<std::string> notes(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].state == Op::done) continue;
      late.push_back(i);
      if (ops[i].state == Op::probing) {  // nothing was posted: nothing to cancel
        ops[i].state = Op::done;
        notes[i] = "nothing arrived";
      } else {
        notes[i] = transfers[i].kind == TransferKind::send ? "the peer did not take it" : "its data was still arriving";
      }
    }
    // Transfers caught mid-way get a moment to finish (receives that took their message,
    // longer); then their peers are given up on.
    progress_while_in_flight(worker, ops, Clock::now() + kFinishGrace);
    std::vector<Op*> arriving;
    for (size_t i : late)
      if (ops[i].state == Op::in_flight && ops[i].matched) arriving.push_back(&ops[i]);
    const auto arriving_until = Clock::now() + kMatchedGrace;
    while (Clock::now() < arriving_until &&
           std::any_of(arriving.begin(), arriving.end(), [](const Op* op) { return op->state == Op::in_flight; }))
      ucp_worker_progress(worker);
    // The endpoint is the process's, shared with other groups: it stays open, and what is
    // still in flight is parked. UCX completes it if the peer ever takes it, or fails it when
    // the connection fails (TCP; the endpoint is then replaced for later groups).
    bool parking = false;
    for (size_t i : late) {
      if (ops[i].state != Op::in_flight) continue;
      Peer& peer = *peers_[size_t(transfers[i].peer)];
      if (peer.broken.empty())
        peer.broken = "an earlier " + describe(transfers[i]) + " missed its deadline and could not be withdrawn";
      notes[i] += "; peer " + std::to_string(peer.rank) + " is now unusable in this group";
      ucp_request_free(std::exchange(ops[i].request, nullptr));  // released by UCX once it completes
      peer.link->parked = true;
      parking = true;
    }
    for (Op& op : ops)
      if (op.request) ucp_request_free(op.request);
    // What did arrive is opened too: a caller may look at a buffer after a timeout.
    open_received(auth_.get(), transfers, ops);
    Status forged = refuse_all_forged();
    if (parking) {
      detail::ParkedExchange parked{std::move(ops), {}};
      for (const Transfer& t : transfers) parked.tensors.push_back(t.tensor);
      worker_->parked.push_back(std::move(parked));
    }
    SM_TRY(forged);
    std::string list;
    for (size_t i : late) list += (list.empty() ? "" : "; ") + describe(transfers[i]) + " (" + notes[i] + ")";
    return make_error(was_cancelled ? ErrorCode::cancelled : ErrorCode::timeout, "ucx rank ", rank_, " (group ", group_,
                      "): ", was_cancelled ? "cancelled" : "deadline passed", " after ", ms_since(start), " ms with ",
                      late.size(), " of ", transfers.size(), " transfers unfinished: ", list);
  }
  for (Op& op : ops)
    if (op.request) ucp_request_free(op.request);
  lock.unlock();  // other groups use the worker while the MACs are checked
  open_received(auth_.get(), transfers, ops);
  lock.lock();
  SM_TRY(refuse_all_forged());  // before any other error: a forgery is not retried

  for (size_t i = 0; i < ops.size(); ++i) {
    const Transfer& t = transfers[i];
    const Op& op = ops[i];
    if (op.refused) {  // the peer is not trusted with this group again
      Peer& peer = *peers_[size_t(t.peer)];
      if (peer.broken.empty())
        peer.broken = "it sent a message of " + payload_text(op, op.length) + " where " +
                      std::to_string(t.tensor.nbytes()) + " B were expected";
      return make_error(where(t), ": the message has ", payload_text(op, op.length), " but the receive expects ",
                        t.tensor.nbytes(), " B, more than ", mismatch_limit(wire_size(op, t.tensor.nbytes())),
                        " B on the wire taken for a wrong size: not received, and peer ", t.peer,
                        " is unusable in this group");
    }
    if (t.kind == TransferKind::recv && op.length != wire_size(op, t.tensor.nbytes()))
      return make_error(where(t), ": the message has ", payload_text(op, op.length), " but the receive expects ",
                        t.tensor.nbytes(), " B");
    if (op.status != UCS_OK) {
      const std::string why = peers_[size_t(t.peer)]->unusable();
      return make_error(where(t), ": ", ucs_status_string(op.status), why.empty() ? "" : " (" + why + ")");
    }
  }
  return {};
}

// A message that failed authentication: its rank is cut off in this group (UCX cannot say
// which endpoint sent it, only the rank it came under). Under the worker's lock.
Error UcxTransport::refuse_forged(const Transfer& t, const Status& why) {
  const std::string where =
      "ucx rank " + std::to_string(rank_) + " (group " + std::to_string(group_) + ") " + describe(t);
  if (why.code() != ErrorCode::unauthenticated)  // OpenSSL failed: the message is not trusted either
    return with_prefix(where + ": opening the message: ", why.error());
  Peer& peer = *peers_[size_t(t.peer)];
  if (peer.broken.empty()) peer.broken = "a message under its rank failed authentication (" + why.message() + ")";
  return make_error(ErrorCode::unauthenticated, where, ": the message failed authentication: ", why.message(),
                    ". It was forged, altered or replayed (it came under rank ", t.peer,
                    ", not necessarily from that rank's worker); peer ", t.peer, " is unusable in this group");
}

}  // namespace starmesh
