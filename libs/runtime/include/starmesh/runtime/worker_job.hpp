#pragma once
// A context worker's job, from order to thread: make_job checks an EncodeOrder against this
// worker's model (every size and id it carries) and builds the Job; run_job is the job's
// thread: phase 1 (libs/attention's encode_host, block by block under the compute lock),
// then, on a shard host, the phase-2 shard loop until the coordinator is done.
#include <memory>

#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/data_plane.hpp"
#include "starmesh/runtime/jobs_book.hpp"
#include "starmesh/runtime/shard_server.hpp"
#include "starmesh/runtime/worker_engine.hpp"

namespace starmesh {

// The job of `order` (not admitted, not started); `vocab_size` bounds its token ids.
Expected<std::shared_ptr<Job>> make_job(EncodeOrder& order, int64_t vocab_size);

// The job's thread: joins the request's data-plane group (off the actor: joining waits for
// the peers, and a stopped peer must not stall the worker's messages, liveness probes included),
// then phase 1, then on a shard host the shard loop. Posts encoded_atom to `worker` once the
// group is joined and phase 1 is over (or skipped for a kept context's shard), and served_atom
// once the thread ends.
void run_job(std::shared_ptr<WorkerEngine> engine, std::shared_ptr<Job> job, data_plane_i* plane,
             ShardServerOptions serve, WorkerActor worker);

}  // namespace starmesh
