#include "starmesh/runtime/jobs_book.hpp"

namespace starmesh {

Status JobsBook::admit(std::shared_ptr<Job> job, uint64_t reuse_context) {
  const std::string req = "request " + std::to_string(job->id);
  if (jobs_.count(job->id)) return make_error(ErrorCode::invalid_argument, req, " is already here");
  const HostRange& r = job->plan.hosts.at(size_t(job->host));
  if (reuse_context != 0) {
    auto c = contexts_.find(reuse_context);
    if (c == contexts_.end())
      return make_error(ErrorCode::not_found, "context ", reuse_context,
                        " is not kept on this worker any more (dropped to make room, or never kept here)");
    if (c->second->begin != r.begin || c->second->end != r.end)
      return make_error(ErrorCode::invalid_argument, "context ", reuse_context, " holds tokens [", c->second->begin,
                        ", ", c->second->end, ") here, the order asks for [", r.begin, ", ", r.end, ")");
    job->shard = c->second;
  }
  const int64_t need = (reuse_context != 0 ? 0 : pool_.booked(r.end - r.begin)) + pool_.booked(job->local_capacity);
  if (Status s = pool_.reserve(job->id, need); !s)
    return make_error(ErrorCode::overloaded, "refused: ", s.message(),
                      " (start the worker with a larger --capacity, or add workers)");
  jobs_[job->id] = std::move(job);
  return {};
}

void JobsBook::withdraw(uint64_t id) {
  pool_.release(id);
  jobs_.erase(id);
}

std::shared_ptr<Job> JobsBook::find(uint64_t id) const {
  auto j = jobs_.find(id);
  return j == jobs_.end() ? nullptr : j->second;
}

std::shared_ptr<Job> JobsBook::live(uint64_t id) const {
  auto j = find(id);
  return j && !j->freed ? j : nullptr;
}

std::shared_ptr<Job> JobsBook::retire(uint64_t id) {
  auto job = live(id);
  if (!job) return nullptr;
  job->freed = true;
  job->stop = true;
  pool_.release(id);
  if (!job->thread.joinable()) jobs_.erase(id);
  return job;
}

void JobsBook::thread_ended(uint64_t id) {
  auto j = jobs_.find(id);
  if (j != jobs_.end() && j->second->freed) jobs_.erase(j);
}

std::vector<std::shared_ptr<Job>> JobsBook::orphans_of(const caf::actor_addr& driver) const {
  std::vector<std::shared_ptr<Job>> out;
  for (const auto& [id, job] : jobs_)
    if (!job->freed && job->driver && job->driver.address() == driver) out.push_back(job);
  return out;
}

Status JobsBook::keep(uint64_t id) {
  auto job = live(id);
  if (!job) return make_error(ErrorCode::not_found, "request ", id, " is not on this worker: nothing to keep");
  if (!job->keep || !job->shard) {
    retire(id);
    return make_error(ErrorCode::invalid_argument, "request ", id, " has no shard to keep here");
  }
  std::shared_ptr<const KvShard> shard = job->shard;
  retire(id);  // the request's KV goes; the context's is booked below (it fits: more was just freed)
  if (Status s = pool_.reserve(context_key(id), pool_.booked(shard->end - shard->begin)); !s)
    return make_error(ErrorCode::overloaded, "keeping context ", id, ": ", s.message());
  contexts_[id] = std::move(shard);
  return {};
}

size_t JobsBook::drop(uint64_t id) {
  size_t dropped = 0;
  for (auto it = contexts_.begin(); it != contexts_.end();) {
    if (id != 0 && it->first != id) {
      ++it;
      continue;
    }
    pool_.release(context_key(it->first));
    it = contexts_.erase(it);
    ++dropped;
  }
  return dropped;
}

}  // namespace starmesh
