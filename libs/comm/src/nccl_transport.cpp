#include "starmesh/comm/nccl_transport.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <sched.h>

#include <cstring>

namespace starmesh {

static_assert(kNcclUniqueIdBytes == NCCL_UNIQUE_ID_BYTES, "the header's copy of NCCL's id size");

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kFinalizeGrace = std::chrono::seconds(5);

int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Makes `device` current for the scope and restores the caller's.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    ok_ = cudaGetDevice(&previous_) == cudaSuccess && cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  bool ok() const { return ok_; }

 private:
  int previous_ = -1;
  bool ok_ = false;
};

std::string nccl_text(ncclResult_t r) {
  return std::string(ncclGetErrorString(r)) + " (" + std::to_string(int(r)) + ")";
}

}  // namespace

struct NcclTransport::Comm {
  ncclComm_t comm = nullptr;
  cudaStream_t after = nullptr;   // the caller's: each call follows its work
  cudaStream_t stream = nullptr;  // the communicator's own
  cudaEvent_t queued = nullptr;   // recorded on `after`, waited on by `stream`
  int device = 0;
  std::string broken;  // why the communicator was aborted; empty while it is usable

  ~Comm() {  // after the communicator is gone: nothing of it runs on the stream any more
    if (queued) cudaEventDestroy(queued);
    if (stream) cudaStreamDestroy(stream);
  }
};

Expected<std::vector<uint8_t>> nccl_unique_id() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return make_error("ncclGetUniqueId failed: ", nccl_text(r));
  const auto* p = reinterpret_cast<const uint8_t*>(id.internal);
  return std::vector<uint8_t>(p, p + NCCL_UNIQUE_ID_BYTES);
}

NcclTransport::NcclTransport(std::unique_ptr<Comm> comm, int rank, int size)
    : comm_(std::move(comm)), rank_(rank), size_(size) {}

Expected<std::unique_ptr<NcclTransport>> NcclTransport::create(int rank, int size, std::span<const uint8_t> unique_id,
                                                               int cuda_device, CUstream_st* after, Deadline deadline) {
  const auto start = Clock::now();
  if (size < 1 || rank < 0 || rank >= size)
    return make_error("NCCL create: rank ", rank, " of ", size, " is not a rank");
  if (unique_id.size() != NCCL_UNIQUE_ID_BYTES)
    return make_error("NCCL create: the unique id has ", unique_id.size(), " B, NCCL's has ", NCCL_UNIQUE_ID_BYTES,
                      " (pass the bytes of nccl_unique_id() from one rank)");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || cuda_device < 0 || cuda_device >= devices)
    return make_error("NCCL create: rank ", rank, " asks for CUDA device ", cuda_device, " but this process sees ",
                      devices, " devices");
  DeviceScope scope(cuda_device);
  if (!scope.ok()) return make_error("NCCL create: cannot make CUDA device ", cuda_device, " current");

  auto c = std::make_unique<Comm>();
  c->after = reinterpret_cast<cudaStream_t>(after);
  c->device = cuda_device;
  if (cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess ||
      cudaEventCreateWithFlags(&c->queued, cudaEventDisableTiming) != cudaSuccess)
    return make_error("NCCL create: rank ", rank, ": cannot make a stream and an event on device ", cuda_device);
  ncclUniqueId id;
  std::memcpy(id.internal, unique_id.data(), NCCL_UNIQUE_ID_BYTES);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // returns at once; completion is polled below, so a missing rank meets the deadline
  ncclResult_t r = ncclCommInitRankConfig(&c->comm, size, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (c->comm) ncclCommAbort(c->comm);
    return make_error("NCCL create: rank ", rank, " of ", size, " on device ", cuda_device, ": ", nccl_text(r));
  }
  for (;;) {
    ncclResult_t state = ncclSuccess;
    r = ncclCommGetAsyncError(c->comm, &state);
    if (r == ncclSuccess && state == ncclSuccess) break;
    if (r != ncclSuccess || state != ncclInProgress) {
      ncclCommAbort(c->comm);
      return make_error("NCCL create: rank ", rank, " of ", size, " on device ", cuda_device, ": ",
                        nccl_text(r != ncclSuccess ? r : state),
                        " (NCCL needs one device per rank: two ranks on one GPU are refused)");
    }
    if (Clock::now() >= deadline) {
      ncclCommAbort(c->comm);
      return make_error("NCCL create: rank ", rank, " of ", size, " still waiting for the others after ",
                        ms_since(start), " ms (deadline): did every rank call create with the same unique id?");
    }
    sched_yield();
  }
  return std::unique_ptr<NcclTransport>(new NcclTransport(std::move(c), rank, size));
}

NcclTransport::~NcclTransport() {
  if (!comm_ || !comm_->comm || !comm_->broken.empty()) return;  // an aborted communicator is already gone
  DeviceScope scope(comm_->device);
  ncclResult_t r = ncclCommFinalize(comm_->comm);
  const auto until = Clock::now() + kFinalizeGrace;
  ncclResult_t state = ncclInProgress;
  while (r == ncclSuccess || r == ncclInProgress) {
    if (ncclCommGetAsyncError(comm_->comm, &state) != ncclSuccess || state != ncclInProgress) break;
    if (Clock::now() >= until) break;
    sched_yield();
  }
  if (state == ncclSuccess)
    ncclCommDestroy(comm_->comm);
  else
    ncclCommAbort(comm_->comm);
}

Status NcclTransport::check(const Tensor& t, const std::string& what) const {
  if (t.device().kind != DeviceKind::cuda || t.device().index != comm_->device)
    return make_error("nccl rank ", rank_, " ", what, ": the tensor is on ", to_string(t.device()),
                      " but this rank's communicator is on cuda:", comm_->device);
  if (t.nbytes() > 0 && !t.defined()) return make_error("nccl rank ", rank_, " ", what, ": the tensor has no storage");
  return {};
}

Status NcclTransport::follow(const std::string& what) {
  if (cudaEventRecord(comm_->queued, comm_->after) != cudaSuccess ||
      cudaStreamWaitEvent(comm_->stream, comm_->queued, 0) != cudaSuccess)
    return make_error("nccl rank ", rank_, " ", what, ": cannot order the transfer after the caller's stream");
  return {};
}

Status NcclTransport::wait(Deadline deadline, Clock::time_point start, const std::string& what) {
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_->comm, &state);
    if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
      comm_->broken = "NCCL reported " + nccl_text(r != ncclSuccess ? r : state);
      ncclCommAbort(comm_->comm);
      return make_error("nccl rank ", rank_, " ", what, ": ", comm_->broken, "; the communicator was aborted");
    }
    if (state == ncclSuccess) {  // everything is enqueued; is the stream done?
      const cudaError_t e = cudaStreamQuery(comm_->stream);
      if (e == cudaSuccess) return {};
      if (e != cudaErrorNotReady) {
        comm_->broken = std::string("CUDA reported ") + cudaGetErrorString(e);
        ncclCommAbort(comm_->comm);
        return make_error("nccl rank ", rank_, " ", what, ": ", comm_->broken, "; the communicator was aborted");
      }
    }
    if (Clock::now() >= deadline || cancelled()) {
      const bool late = Clock::now() >= deadline;
      const char* why = late ? "deadline passed" : "cancelled";
      comm_->broken = std::string("an earlier call ended unfinished: ") + why + " (" + what + ")";
      ncclCommAbort(comm_->comm);
      return make_error(late ? ErrorCode::timeout : ErrorCode::cancelled, "nccl rank ", rank_, ": ", why, " after ",
                        ms_since(start), " ms, unfinished: ", what, "; the communicator was aborted: create a new one");
    }
    sched_yield();
  }
}

Status NcclTransport::exchange(std::span<const Transfer> transfers, Deadline deadline) {
  const auto start = Clock::now();
  if (!comm_->broken.empty()) return make_error("nccl rank ", rank_, ": the communicator is unusable: ", comm_->broken);
  std::string what;
  for (const Transfer& t : transfers) {
    if (t.peer < 0 || t.peer >= size_)
      return make_error("nccl rank ", rank_, " ", describe(t), ": no such rank (group of ", size_, ")");
    SM_TRY(check(t.tensor, describe(t)));
    what += (what.empty() ? "" : "; ") + describe(t);
  }
  if (transfers.empty()) return {};
  DeviceScope scope(comm_->device);
  SM_TRY(follow(what));
  ncclResult_t r = ncclGroupStart();
  for (const Transfer& t : transfers) {
    if (r != ncclSuccess && r != ncclInProgress) break;
    r = t.kind == TransferKind::send
            ? ncclSend(t.tensor.data(), t.tensor.nbytes(), ncclUint8, t.peer, comm_->comm, comm_->stream)
            : ncclRecv(t.tensor.data(), t.tensor.nbytes(), ncclUint8, t.peer, comm_->comm, comm_->stream);
  }
  const ncclResult_t end = ncclGroupEnd();
  if (r == ncclSuccess || r == ncclInProgress) r = end;
  if (r != ncclSuccess && r != ncclInProgress)
    return make_error("nccl rank ", rank_, " ", what, ": enqueueing failed: ", nccl_text(r));
  return wait(deadline, start, what);
}

Status NcclTransport::broadcast(int root, uint64_t tag, const Tensor& t, Deadline deadline) {
  const auto start = Clock::now();
  if (!comm_->broken.empty()) return make_error("nccl rank ", rank_, ": the communicator is unusable: ", comm_->broken);
  if (root < 0 || root >= size_) return make_error("nccl broadcast: root ", root, " is not a rank of ", size_);
  const std::string what = "broadcast from root " + std::to_string(root) + ", tag " + std::to_string(tag) + ", " +
                           std::to_string(t.nbytes()) + " B";
  SM_TRY(check(t, what));
  DeviceScope scope(comm_->device);
  SM_TRY(follow(what));
  const ncclResult_t r = ncclBroadcast(t.data(), t.data(), t.nbytes(), ncclUint8, root, comm_->comm, comm_->stream);
  if (r != ncclSuccess && r != ncclInProgress)
    return make_error("nccl rank ", rank_, " ", what, ": enqueueing failed: ", nccl_text(r));
  return wait(deadline, start, what);
}

}  // namespace starmesh
