#include "starmesh/metrics/registry.hpp"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace starmesh::metrics {
namespace {

// prometheus-cpp 1.0.1 writes help text as given (label values it escapes): a newline there
// would end the line. Escaped here, as the text format asks (\\ and \n).
std::string escape_help(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::counter:
      return "counter";
    case Kind::gauge:
      return "gauge";
    case Kind::histogram:
      return "histogram";
  }
  return "untyped";
}

void check_bounds(const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i)
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i])))
      throw std::invalid_argument("histogram bounds must be finite and strictly ascending");
}

}  // namespace

bool valid_metric_name(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return name.rfind("__", 0) != 0;  // reserved for Prometheus's own
}

bool valid_label_name(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0 || name == "le") return false;
  return valid_metric_name(name) && name.find(':') == std::string::npos;
}

PendingObservations::PendingObservations(std::vector<double> bounds)
    : bounds_(std::move(bounds)), per_bucket_(bounds_.size() + 1) {}

void PendingObservations::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());  // v <= bound
  per_bucket_[i] += 1;
  sum_ += v;
  ++count_;
}

void Histogram::observe(const PendingObservations& p) {
  if (p.count_ == 0) return;
  if (p.bounds_ != *bounds_) throw std::invalid_argument("observations kept with other bounds than the histogram's");
  h_->ObserveMultiple(p.per_bucket_, p.sum_);
}

Histogram::Snapshot Histogram::snapshot() const {
  const prometheus::ClientMetric m = h_->Collect();
  Snapshot s;
  for (const auto& b : m.histogram.bucket) s.cumulative.push_back(b.cumulative_count);
  s.count = m.histogram.sample_count;
  s.sum = m.histogram.sample_sum;
  return s;
}

template <class Metric>
Metric& Family<Metric>::with(const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = children_.find(labels);
  if (it != children_.end()) return *it->second;
  prometheus::Labels named;
  for (const auto& [k, v] : labels)
    if (!valid_label_name(k) || !named.emplace(k, v).second)
      throw std::invalid_argument("metric " + name_ + ": invalid or repeated label name '" + k + "'");
  std::unique_ptr<Metric> m;
  if constexpr (std::is_same_v<Metric, Histogram>)
    m = std::make_unique<Histogram>(backend_.Add(named, bounds_), bounds_);
  else
    m = std::make_unique<Metric>(backend_.Add(named));
  return *children_.emplace(labels, std::move(m)).first->second;
}

template <class Metric>
void Family<Metric>::remove(const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = children_.find(labels);
  if (it == children_.end()) return;
  backend_.Remove(it->second->backend());
  children_.erase(it);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Registry::Registry() : backend_(std::make_unique<prometheus::Registry>()) {}
Registry::~Registry() = default;

Registry::Entry& Registry::entry(const std::string& name, Kind kind) {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (auto& [n, e] : entries_)
    if (n == name) {
      if (e.kind != kind)
        throw std::invalid_argument("metric " + name + " is already registered as a " + kind_name(e.kind));
      return e;
    }
  entries_.emplace_back(name, Entry{kind, nullptr, nullptr, nullptr});
  return entries_.back().second;
}

Family<Counter>& Registry::counter(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  Entry& e = entry(name, Kind::counter);
  if (!e.counter) {
    auto& b = prometheus::BuildCounter().Name(name).Help(escape_help(help)).Register(*backend_);
    e.counter = std::make_unique<Family<Counter>>(b, name, help, Kind::counter);
  }
  return *e.counter;
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  Entry& e = entry(name, Kind::gauge);
  if (!e.gauge) {
    auto& b = prometheus::BuildGauge().Name(name).Help(escape_help(help)).Register(*backend_);
    e.gauge = std::make_unique<Family<Gauge>>(b, name, help, Kind::gauge);
  }
  return *e.gauge;
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  Entry& e = entry(name, Kind::histogram);
  if (!e.histogram) {
    check_bounds(bounds);  // before the family exists
    auto& b = prometheus::BuildHistogram().Name(name).Help(escape_help(help)).Register(*backend_);
    e.histogram = std::make_unique<Family<Histogram>>(b, name, help, Kind::histogram, std::move(bounds));
  } else if (e.histogram->bounds() != bounds) {
    throw std::invalid_argument("metric " + name + " is already registered with other buckets");
  }
  return *e.histogram;
}

std::string Registry::expose() const {
  std::vector<prometheus::MetricFamily> families = backend_->Collect();
  {
    // prometheus-cpp collects counters, then gauges, then histograms, children in hash
    // order: back to registration order, children by their labels.
    std::lock_guard lock(mu_);
    auto rank = [&](const prometheus::MetricFamily& f) {
      for (size_t i = 0; i < entries_.size(); ++i)
        if (entries_[i].first == f.name) return i;
      return entries_.size();
    };
    std::stable_sort(families.begin(), families.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  }
  for (auto& f : families)
    std::sort(f.metric.begin(), f.metric.end(), [](const auto& a, const auto& b) { return a.label < b.label; });
  return prometheus::TextSerializer().Serialize(families);
}

std::vector<std::string> Registry::names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

}  // namespace starmesh::metrics
