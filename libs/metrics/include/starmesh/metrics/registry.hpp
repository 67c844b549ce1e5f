#pragma once
// Metrics for operators on prometheus-cpp's core (Debian's prometheus-cpp-dev 1.0): counters,
// gauges and histograms with labels, kept in a registry whose text exposition (prometheus-cpp's
// TextSerializer, format 0.0.4) our own HTTP endpoint serves; prometheus-cpp's pull Exposer is
// not used: its civetweb threads fail beside cuBLASLt (docs/TRAPS.md). This thin layer keeps
// our call shape (`family.with({...}).inc()`), refuses bad names and bounds when a family is
// made (prometheus-cpp checks some only when a child is added), and renders families in the
// order they were made with children in label order. Looking a child up takes a lock, so hot
// paths keep the reference (`Counter& c = family.with({...})`); counter and gauge updates are
// then atomics, a histogram's a short lock of its own.
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "starmesh/metrics/buckets.hpp"

namespace starmesh::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  explicit Counter(prometheus::Counter& c) : c_(&c) {}
  void inc(double v = 1.0) { c_->Increment(v); }  // v >= 0 (prometheus-cpp ignores a negative v)
  double value() const { return c_->Value(); }
  prometheus::Counter* backend() const { return c_; }  // for Family::remove

 private:
  prometheus::Counter* c_;
};

class Gauge {
 public:
  explicit Gauge(prometheus::Gauge& g) : g_(&g) {}
  void set(double v) { g_->Set(v); }
  void add(double v) { g_->Increment(v); }
  double value() const { return g_->Value(); }
  prometheus::Gauge* backend() const { return g_; }  // for Family::remove

 private:
  prometheus::Gauge* g_;
};

// Observations kept aside and added to a histogram at once, or dropped: e.g. a request's
// inter-token gaps, which count only if the request succeeds. One owner, no lock.
class PendingObservations {
 public:
  PendingObservations() = default;  // no bounds: only its +Inf bucket (assign Histogram::pending())
  explicit PendingObservations(std::vector<double> bounds);
  void observe(double v);
  uint64_t count() const { return count_; }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  friend class Histogram;
  std::vector<double> bounds_;
  std::vector<double> per_bucket_ = std::vector<double>(1);  // per bound, then +Inf (not cumulative)
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Observations counted into buckets with upper bounds `bounds` (ascending; +Inf is implied).
class Histogram {
 public:
  Histogram(prometheus::Histogram& h, const std::vector<double>& bounds) : h_(&h), bounds_(&bounds) {}
  void observe(double v) { h_->Observe(v); }
  // Adds what was kept aside (with these bounds; other bounds throw std::invalid_argument).
  void observe(const PendingObservations& p);
  PendingObservations pending() const { return PendingObservations(*bounds_); }
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return *bounds_; }
  prometheus::Histogram* backend() const { return h_; }  // for Family::remove

 private:
  prometheus::Histogram* h_;
  const std::vector<double>* bounds_;  // the family's
};

enum class Kind { counter, gauge, histogram };

template <class Metric>
struct PrometheusType;
template <>
struct PrometheusType<Counter> {
  using type = prometheus::Counter;
};
template <>
struct PrometheusType<Gauge> {
  using type = prometheus::Gauge;
};
template <>
struct PrometheusType<Histogram> {
  using type = prometheus::Histogram;
};

// One metric name and its children, one per label set.
template <class Metric>
class Family {
 public:
  using Backend = prometheus::Family<typename PrometheusType<Metric>::type>;
  Family(Backend& backend, std::string name, std::string help, Kind kind, std::vector<double> bounds = {})
      : backend_(backend), name_(std::move(name)), help_(std::move(help)), kind_(kind), bounds_(std::move(bounds)) {}
  // The child with these labels (created on first use). Label names must be valid
  // Prometheus names, not "le", each once; throws std::invalid_argument otherwise.
  Metric& with(const Labels& labels = {});
  // Removes the child with these labels (a worker that left), if any: references to it
  // become invalid.
  void remove(const Labels& labels);
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  Kind kind() const { return kind_; }
  const std::vector<double>& bounds() const { return bounds_; }  // histograms

 private:
  Backend& backend_;
  std::string name_, help_;
  Kind kind_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<Metric>> children_;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The family of that name, created on first use (a later call's help is ignored). A name
  // that is not a valid Prometheus metric name, or one already registered as another kind (or
  // a histogram with other bounds), throws std::invalid_argument: these are programming
  // errors, found at startup.
  Family<Counter>& counter(const std::string& name, const std::string& help);
  Family<Gauge>& gauge(const std::string& name, const std::string& help);
  Family<Histogram>& histogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  // Every family in registration order, children in label order, in the text exposition format.
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
  std::unique_ptr<prometheus::Registry> backend_;
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

bool valid_metric_name(const std::string& name);
bool valid_label_name(const std::string& name);

}  // namespace starmesh::metrics
