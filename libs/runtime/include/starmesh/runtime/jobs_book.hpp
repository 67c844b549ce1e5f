#pragma once
// The context worker's policy, as a plain object: the job table (one Job per request placed
// here), the KV pool every job reserves from before it allocates anything, the kept contexts'
// shards (encode once, ask many times), and retirement (a job's KV returns at once; its record
// goes once its thread has ended). The worker actor only turns messages into calls here.
// tests/runtime/test_jobs_book.cpp covers every rule without CAF or threads.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "starmesh/attention/block_plan.hpp"
#include "starmesh/attention/phase1.hpp"
#include "starmesh/comm/message_auth.hpp"
#include "starmesh/comm/transport.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/runtime/kv_pool.hpp"
#include "starmesh/runtime/messages.hpp"

namespace starmesh {

// One request on this worker. The compute thread writes the phase-1 results before it posts
// `encoded` to the actor; the actor reads them after (the message is the synchronization).
struct Job {
  uint64_t id = 0;
  int host = 0;
  bool query_host = false;
  BlockPlan plan;
  std::vector<int32_t> context;  // anchor and own blocks filled in; dropped after phase 1
  int64_t local_capacity = 0;    // query host: query + generated tokens
  std::chrono::milliseconds step_timeout{60000};
  std::vector<std::string> host_names;          // per rank, for messages
  std::vector<std::vector<uint8_t>> addresses;  // per rank: the data-plane addresses of the group
  MessageKey data_plane_key{};                  // the group's messages are authenticated under it
  uint64_t tenant_tag = 0;                      // phase 1 takes turns between tenants by it
  Priority priority = Priority::normal;         // and within the tenant, higher first
  RequestActor driver;
  std::unique_ptr<transport_i> transport;  // joined by the job's thread (joining may wait on peers)
  std::atomic<bool> stop{false};
  std::thread thread;

  // Written by the thread.
  std::shared_ptr<const KvShard> shard;  // the host's blocks (a kept context's: shared with it)
  Status phase1;                         // phase 1 failed
  Status served;                         // the shard loop failed
  double phase1_seconds = 0;
  int64_t shard_tokens = 0;

  // Actor side.
  bool encoded = false;
  bool freed = false;
  bool keep = false;  // the driver may turn the shard into a kept context (keep)
  bool phase2_started = false;
  CoordinatorActor coordinator;
};

class JobsBook {
 public:
  explicit JobsBook(int64_t kv_capacity, int64_t page_tokens = 0) : pool_(kv_capacity, page_tokens) {}

  // Takes a job in: refuses a request already here, a kept context (`reuse_context`) that is
  // not here or holds another range, and KV the pool cannot give; else reserves the job's KV
  // (its shard unless kept, plus its local tokens) and files it. A kept context's shard is
  // set on the job (no phase 1 then).
  Status admit(std::shared_ptr<Job> job, uint64_t reuse_context);
  // Undoes admit() (the job could not start): its reservation and record go.
  void withdraw(uint64_t id);
  // The job, or null when it is not here or was freed.
  std::shared_ptr<Job> live(uint64_t id) const;
  std::shared_ptr<Job> find(uint64_t id) const;  // freed ones too

  // Ends a job: its KV returns to the pool now and its stop flag is set. The record goes now
  // when no thread runs for it, else at thread_ended(). Returns the job (null: not here, or
  // freed already) so the caller stops what runs for it.
  std::shared_ptr<Job> retire(uint64_t id);
  // The job's thread has ended (joined by the caller): a freed job's record goes.
  void thread_ended(uint64_t id);
  // The running jobs whose driver is `driver` (it went away: nobody will free them).
  std::vector<std::shared_ptr<Job>> orphans_of(const caf::actor_addr& driver) const;

  // The request ends keeping its shard as kept context `id`: the request's KV goes, the
  // context's is booked. Refuses (and retires the job) when there is no shard to keep.
  Status keep(uint64_t id);
  // Drops kept context `id` (0: every one). Returns how many went.
  size_t drop(uint64_t id);
  bool holds_context(uint64_t id) const { return contexts_.count(id) > 0; }

  const KvPool& pool() const { return pool_; }
  size_t jobs() const { return jobs_.size(); }
  // Every job, freed ones included (the destructor of the actor's state joins their threads).
  const std::map<uint64_t, std::shared_ptr<Job>>& all() const { return jobs_; }

 private:
  KvPool pool_;
  std::map<uint64_t, std::shared_ptr<Job>> jobs_;
  // Kept contexts: their shards, read by the requests that attach to them (KV booked in the
  // pool under context_key(id)).
  std::map<uint64_t, std::shared_ptr<const KvShard>> contexts_;
};

}  // namespace starmesh
