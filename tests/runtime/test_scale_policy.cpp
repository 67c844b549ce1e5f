// The desired-worker rule (scale_policy.hpp) under synthetic load: no actors, no processes.
#include <doctest/doctest.h>

#include "starmesh/runtime/scale_policy.hpp"

using namespace starmesh;

namespace {

ScaleOptions options() {
  ScaleOptions o;
  o.target_kv_utilisation = 0.5;
  o.target_requests_per_worker = 4;
  o.kept_weight = 0.5;
  o.min_workers = 1;
  o.max_workers = 10;
  o.worker_capacity = 1000;
  return o;
}

ScaleInputs mesh(int workers, int64_t per_worker = 1000) {
  ScaleInputs in;
  in.workers = workers;
  in.kv_capacity = workers * per_worker;
  return in;
}

}  // namespace

TEST_CASE("an idle mesh wants its minimum") {
  const ScaleDecision d = desired_workers(mesh(4), options());
  CHECK(d.desired == 1);
  CHECK(d.by_kv == 0);
  CHECK(d.by_requests == 0);
  CHECK(d.reason.find("minimum") != std::string::npos);
}

TEST_CASE("KV demand over the target utilisation asks for more workers, rounded up") {
  ScaleInputs in = mesh(2);
  in.kv_reserved = 1200;  // at 500 usable tokens per worker: 2.4 -> 3
  in.running_requests = 2;
  ScaleDecision d = desired_workers(in, options());
  CHECK(d.by_kv == 3);
  CHECK(d.desired == 3);
  in.kv_reserved = 1000;  // exactly 2
  CHECK(desired_workers(in, options()).desired == 2);
}

TEST_CASE("queued requests count with their tokens, and a queue that cannot fit asks for one more") {
  ScaleInputs in = mesh(2);
  in.kv_reserved = 900;
  in.running_requests = 1;
  in.queued_requests = 1;
  in.queued_tokens = 50;  // 950 of demand: 2 workers at 500 usable each
  ScaleDecision d = desired_workers(in, options());
  CHECK(d.desired == 2);
  // A queued request that does not fit in the 1100 free tokens: one more than now, even
  // though the KV term says 2 at a lenient target.
  ScaleOptions lenient = options();
  lenient.target_kv_utilisation = 1.0;
  in.kv_reserved = 1900;
  in.queued_tokens = 200;
  d = desired_workers(in, lenient);
  CHECK(d.by_kv == 3);
  CHECK(d.desired == 3);
  in.kv_reserved = 1500;  // 1700 of demand: 2 by KV, and the 200 queued fit in the 500 free
  d = desired_workers(in, lenient);
  CHECK(d.desired == 2);
  in.queued_tokens = 600;  // 2100 of demand -> 3 by KV anyway
  CHECK(desired_workers(in, lenient).desired == 3);
}

TEST_CASE("many small requests scale by the request term") {
  ScaleInputs in = mesh(1);
  in.running_requests = 9;  // 4 per worker -> 3
  in.kv_reserved = 90;
  const ScaleDecision d = desired_workers(in, options());
  CHECK(d.by_requests == 3);
  CHECK(d.desired == 3);
  CHECK(d.reason.find("requests") != std::string::npos);
}

TEST_CASE("kept contexts count by their weight") {
  ScaleInputs in = mesh(3);
  in.kv_kept = 2000;  // x 0.5 = 1000 -> 2 workers at 500 usable
  CHECK(desired_workers(in, options()).desired == 2);
  ScaleOptions o = options();
  o.kept_weight = 0;
  CHECK(desired_workers(in, o).desired == 1);
  o.kept_weight = 1;
  CHECK(desired_workers(in, o).desired == 4);
}

TEST_CASE("the answer stays within the bounds and says so") {
  ScaleInputs in = mesh(10);
  in.kv_reserved = 1000000;
  ScaleDecision d = desired_workers(in, options());
  CHECK(d.desired == 10);
  CHECK(d.reason.find("maximum") != std::string::npos);
  ScaleOptions o = options();
  o.min_workers = 0;
  CHECK(desired_workers(mesh(0), o).desired == 0);  // scale to zero when nothing waits
}

TEST_CASE("with no worker registered the configured capacity is used, and a waiting request asks for one") {
  ScaleInputs in = mesh(0);
  in.queued_requests = 1;
  in.queued_tokens = 300;
  ScaleOptions o = options();
  o.min_workers = 0;
  ScaleDecision d = desired_workers(in, o);
  CHECK(d.worker_capacity == 1000);
  CHECK(d.desired == 1);
  o.worker_capacity = 0;  // unknown capacity: still one, for the waiting request
  CHECK(desired_workers(in, o).desired == 1);
}

TEST_CASE("the demand curve is monotonic: more load never asks for fewer workers") {
  const ScaleOptions o = options();
  int last = 0;
  for (int64_t reserved = 0; reserved <= 6000; reserved += 37) {
    ScaleInputs in = mesh(4);
    in.kv_reserved = reserved;
    in.running_requests = reserved / 300;
    const int d = desired_workers(in, o).desired;
    CHECK(d >= last);
    last = d;
  }
  CHECK(last == 10);
}

TEST_CASE("scale options out of range are named") {
  ScaleOptions o = options();
  CHECK(check_scale_options(o).empty());
  o.target_kv_utilisation = 0;
  CHECK(check_scale_options(o).find("utilisation") != std::string::npos);
  o = options();
  o.min_workers = 5;
  o.max_workers = 2;
  CHECK(check_scale_options(o).find("min workers") != std::string::npos);
  o = options();
  o.kept_weight = 2;
  CHECK(check_scale_options(o).find("kept") != std::string::npos);
}
