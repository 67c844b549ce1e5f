#include "starmesh/metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace starmesh::metrics {
namespace {

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that reads back exactly
  return std::string(buf, r.ptr);
}

std::string escape(const std::string& s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (quote && c == '"')
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

// {a="x",b="y"} with an optional extra label last (le for buckets); empty labels: nothing.
std::string label_text(const Labels& labels, const char* extra_name = nullptr, const std::string& extra_value = {}) {
  if (labels.empty() && !extra_name) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + escape(v, true) + "\"";
    first = false;
  }
  if (extra_name) out += std::string(first ? "" : ",") + extra_name + "=\"" + extra_value + "\"";
  return out + "}";
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

template <class Metric>
void render(std::string& out, const Family<Metric>& f) {
  out += "# HELP " + f.name() + " " + escape(f.help(), false) + "\n";
  out += "# TYPE " + f.name() + " " + kind_name(f.kind()) + "\n";
  for (const auto& [labels, m] : f.children()) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      const auto snap = m->snapshot();
      const auto& bounds = m->bounds();
      for (size_t i = 0; i <= bounds.size(); ++i) {
        const std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
        out += f.name() + "_bucket" + label_text(labels, "le", le) + " " + std::to_string(snap.cumulative[i]) + "\n";
      }
      out += f.name() + "_sum" + label_text(labels) + " " + format_value(snap.sum) + "\n";
      out += f.name() + "_count" + label_text(labels) + " " + std::to_string(snap.count) + "\n";
    } else {
      out += f.name() + label_text(labels) + " " + format_value(m->value()) + "\n";
    }
  }
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
  return true;
}

bool valid_label_name(const std::string& name) {
  if (name.empty() || name.rfind("__", 0) == 0 || name == "le") return false;
  return valid_metric_name(name) && name.find(':') == std::string::npos;
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end())
    throw std::invalid_argument("histogram bounds must be strictly ascending");
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
  const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());  // v <= bound
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t run = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) s.cumulative[i] = (run += buckets_[i].load(std::memory_order_relaxed));
  s.count = run;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start * std::pow(factor, i));
  return b;
}

template <class Metric>
Metric& Family<Metric>::with(const Labels& labels) {
  std::lock_guard lock(mu_);
  auto it = children_.find(labels);
  if (it != children_.end()) return *it->second;
  for (const auto& [k, v] : labels)
    if (!valid_label_name(k)) throw std::invalid_argument("metric " + name_ + ": invalid label name '" + k + "'");
  std::unique_ptr<Metric> m;
  if constexpr (std::is_same_v<Metric, Histogram>)
    m = std::make_unique<Histogram>(bounds_);
  else
    m = std::make_unique<Metric>();
  return *children_.emplace(labels, std::move(m)).first->second;
}

template <class Metric>
std::vector<std::pair<Labels, const Metric*>> Family<Metric>::children() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<Labels, const Metric*>> out;
  for (const auto& [labels, m] : children_) out.emplace_back(labels, m.get());
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

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
  if (!e.counter) e.counter = std::make_unique<Family<Counter>>(name, help, Kind::counter);
  return *e.counter;
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help) {
  std::lock_guard lock(mu_);
  Entry& e = entry(name, Kind::gauge);
  if (!e.gauge) e.gauge = std::make_unique<Family<Gauge>>(name, help, Kind::gauge);
  return *e.gauge;
}

Family<Histogram>& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  Entry& e = entry(name, Kind::histogram);
  if (!e.histogram) {
    Histogram probe(bounds);  // validates the bounds before the family exists
    e.histogram = std::make_unique<Family<Histogram>>(name, help, Kind::histogram, std::move(bounds));
  } else if (e.histogram->bounds() != bounds) {
    throw std::invalid_argument("metric " + name + " is already registered with other buckets");
  }
  return *e.histogram;
}

std::string Registry::expose() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, e] : entries_) {
    if (e.counter) render(out, *e.counter);
    if (e.gauge) render(out, *e.gauge);
    if (e.histogram) render(out, *e.histogram);
  }
  return out;
}

std::vector<std::string> Registry::names() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

}  // namespace starmesh::metrics
