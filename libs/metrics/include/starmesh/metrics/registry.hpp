#pragma once
// Metrics for operators: counters, gauges and histograms with labels, kept in a registry that
// renders them in the Prometheus text exposition format (version 0.0.4). Updates are
// lock-free on a metric already looked up; looking one up by labels takes a lock, so hot
// paths keep the reference (`Counter& c = family.with({...})`) and update it.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace starmesh::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(double v = 1.0) { value_.fetch_add(v, std::memory_order_relaxed); }  // v >= 0
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets with upper bounds `bounds` (ascending; +Inf is implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound, then +Inf (not cumulative)
  std::atomic<double> sum_{0.0};
};

// Bounds from `start`, each `factor` times the last, `count` of them.
std::vector<double> exponential_buckets(double start, double factor, int count);

enum class Kind { counter, gauge, histogram };

// One metric name and its children, one per label set.
template <class Metric>
class Family {
 public:
  Family(std::string name, std::string help, Kind kind, std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), kind_(kind), bounds_(std::move(bounds)) {}
  // The child with these labels (created on first use). Label names must be valid
  // Prometheus names; throws std::invalid_argument otherwise.
  Metric& with(const Labels& labels = {});
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  Kind kind() const { return kind_; }
  const std::vector<double>& bounds() const { return bounds_; }  // histograms
  // Children in label order, for rendering.
  std::vector<std::pair<Labels, const Metric*>> children() const;

 private:
  std::string name_, help_;
  Kind kind_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<Metric>> children_;
};

class Registry {
 public:
  // The family of that name, created on first use. A name that is not a valid Prometheus
  // metric name, or one already registered as another kind (or a histogram with other
  // bounds), throws std::invalid_argument: these are programming errors, found at startup.
  Family<Counter>& counter(const std::string& name, const std::string& help);
  Family<Gauge>& gauge(const std::string& name, const std::string& help);
  Family<Histogram>& histogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  // Every family in registration order, in the text exposition format.
  std::string expose() const;
  // The registered names (for checking dashboards and rules against what is exported).
  std::vector<std::string> names() const;

 private:
  struct Entry {
    Kind kind;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  Entry& entry(const std::string& name, Kind kind);
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

bool valid_metric_name(const std::string& name);
bool valid_label_name(const std::string& name);

}  // namespace starmesh::metrics
