// CudaBackend::sample against the host sampler (runtime/sampler.cpp) and against the filtered, tempered
// distribution computed here in double precision by a plain full sort:
//  - greedy: the host argmax (lowest id among equal maxima), vocabularies of 129,280 / 1,000 / 37;
//  - every sampled token inside the kept set (top-k / top-p / min-p), 256 mixed rows in one launch;
//  - empirical distributions over many (seed, position) draws: chi-square against the kept softmax;
//  - ties and masses of equal logits (the kernel's bisection fallback), quantised logits;
//  - same seed and position -> same token whatever the batch; other seeds -> other draws;
//  - penalties: the penalised logits bitwise equal to the host's, greedy tokens equal;
//  - logprobs and top logprobs within 1e-4 of the host's; NaN / +inf rows fail alone;
//  - token masks (structured outputs): greedy / logprobs equal to the host sampler given the same ids as
//    its `allowed` list, sampled tokens always allowed, masked-out NaN / +inf / huge logits ignored, the
//    distribution over an allowed subset (chi-square).
// Prints one line per check and a summary; exit 1 if any fails.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "check_util.h"
#include "runtime/device_sampling.h"
#include "runtime/sampler.h"

using namespace ds;
using namespace ds::backend;
using namespace gpucheck;

namespace {
std::unique_ptr<cuda::CudaBackend> g_gpu;

// Host logits [R, V] and their device copy.
struct Logits {
  int64_t R = 0, V = 0;
  std::vector<float> x;
  Logits(int64_t r, int64_t v) : R(r), V(v), x(size_t(r * v)) {}
  float* row(int64_t i) { return x.data() + i * V; }
  const float* row(int64_t i) const { return x.data() + i * V; }
  Tensor device() const {
    Tensor h = Tensor::empty({R, V}, DType::F32);
    std::copy(x.begin(), x.end(), h.f32());
    return g_gpu->from_host(h);
  }
};

SamplingRow make_row(int64_t logits_row, float t, int32_t k, float p, float min_p, uint64_t seed, uint64_t pos) {
  SamplingRow r;
  r.logits_row = logits_row;
  r.temperature = t;
  r.top_k = k;
  r.top_p = p;
  r.min_p = min_p;
  r.seed = seed;
  r.position = pos;
  return r;
}

runtime::SamplingParams params_of(const SamplingRow& r) {
  runtime::SamplingParams p;
  p.temperature = r.temperature;
  p.top_k = r.top_k;
  p.top_p = r.top_p;
  p.min_p = r.min_p;
  p.repetition_penalty = r.repetition_penalty;
  p.frequency_penalty = r.frequency_penalty;
  p.presence_penalty = r.presence_penalty;
  p.logprobs = r.logprobs;
  p.top_logprobs = r.top_logprobs;
  return p;
}

runtime::SampleResult host_sample(const float* x, int64_t V, const SamplingRow& r,
                                  const std::vector<int32_t>& history = {}, size_t prompt_len = 0,
                                  const std::vector<int32_t>* allowed = nullptr) {
  std::mt19937_64 gen(1);
  return runtime::sample(x, V, params_of(r), history, prompt_len, gen, allowed);
}

std::string cfg_name(const SamplingRow& r) {
  return fmt::format("T={} k={} p={} min_p={}", r.temperature, r.top_k, r.top_p, r.min_p);
}

// The kept set and its normalised probabilities, by definition (full sort by probability, ties by
// lower id). `edge`: tokens whose membership is within double-vs-float rounding of a cut.
struct Kept {
  std::vector<double> prob;
  std::vector<char> edge;
  size_t size = 0;
};
Kept kept_set(const float* x, int64_t V, const SamplingRow& r) {
  const double inv_t = 1.0 / r.temperature;
  const int64_t am = std::max_element(x, x + V) - x;
  std::vector<double> p(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) p[size_t(i)] = std::exp(double(x[i]) * inv_t - double(x[am]) * inv_t);
  std::vector<int32_t> ord(static_cast<size_t>(V));
  std::iota(ord.begin(), ord.end(), 0);
  std::stable_sort(ord.begin(), ord.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
  Kept k;
  k.edge.assign(size_t(V), 0);
  size_t keep = size_t(V);
  if (r.top_k > 0 && r.top_k < V) keep = size_t(r.top_k);
  if (r.top_p < 1.0f) {
    double mass = 0;
    for (size_t j = 0; j < keep; ++j) mass += p[size_t(ord[j])];
    const double target = double(r.top_p) * mass;
    double before = 0;
    size_t n = 0;
    while (n < keep && (n == 0 || before < target)) before += p[size_t(ord[n++])];
    const double prev = before - p[size_t(ord[n - 1])];
    if (std::fabs(prev - target) < 1e-5 * mass || std::fabs(before - target) < 1e-5 * mass) {
      k.edge[size_t(ord[n - 1])] = 1;
      if (n < keep) k.edge[size_t(ord[n])] = 1;
    }
    keep = n;
  }
  k.prob.assign(size_t(V), 0.0);
  double total = 0;
  for (size_t j = 0; j < keep; ++j) {
    const int32_t t = ord[j];
    if (r.min_p > 0 && std::fabs(p[size_t(t)] - r.min_p) < 1e-5 * r.min_p) k.edge[size_t(t)] = 1;
    if (r.min_p > 0 && p[size_t(t)] < r.min_p) continue;
    k.prob[size_t(t)] = p[size_t(t)];
    total += p[size_t(t)];
    ++k.size;
  }
  for (double& q : k.prob) q /= total;
  return k;
}

// Chi-square of observed counts against N * prob over the cells with >= 5 expected (the rest pooled),
// divided by a bound (df + 6 sqrt(2 df) + 10: far in the tail) that a correct sampler stays under.
double chi2_ratio(const std::vector<int64_t>& counts, const std::vector<double>& prob, int64_t N, int* df_out) {
  double chi = 0, rest_e = 0, rest_o = 0;
  int cells = 0;
  for (size_t i = 0; i < prob.size(); ++i) {
    const double e = double(N) * prob[i];
    if (e >= 5) {
      chi += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
      ++cells;
    } else {
      rest_e += e, rest_o += double(counts[i]);
    }
  }
  if (rest_e >= 5) chi += (rest_o - rest_e) * (rest_o - rest_e) / rest_e, ++cells;
  else chi += rest_o > rest_e + 10 ? 1e9 : 0;  // draws where next to nothing is expected
  const int df = std::max(cells - 1, 1);
  *df_out = df;
  return chi / (df + 6 * std::sqrt(2.0 * df) + 10);
}

// ---------------------------------------------------------------- checks

void check_greedy() {
  for (int64_t V : {129280, 1000, 37}) {
    const int64_t R = 64;
    Logits L(R, V);
    fill_randn(L.x.data(), R * V, 2.f);
    std::uniform_int_distribution<int64_t> pick(0, V - 1);
    for (int64_t r = 0; r < R; ++r) {
      float* x = L.row(r);
      if (r % 3 == 0) {  // a tie for the maximum: the lower id wins
        int64_t a = pick(rng()), b = pick(rng());
        if (a == b) b = (a + 1) % V;
        x[a] = x[b] = 20.f;
      }
      if (r == 5) std::fill(x, x + V, 0.25f);  // all equal: token 0
      if (r == 7) std::fill(x, x + V / 2, -INFINITY);  // masked half
    }
    SamplingBatch b;
    for (int64_t r = 0; r < R; ++r) b.rows.push_back(make_row(r, 0.f, -1, 1.f, 0.f, 1, 0));
    Tensor d = L.device();
    auto got = g_gpu->sample(d, b);
    int diff = 0;
    for (int64_t r = 0; r < R; ++r) diff += got[size_t(r)].token != host_sample(L.row(r), V, b.rows[size_t(r)]).token;
    record("greedy = host argmax", fmt::format("V={} {} rows (ties, all-equal, masked)", V, R), diff, 0);
  }
}

void check_membership_mixed_batch() {
  // 256 rows, every configuration side by side (greedy ones too) in one launch; 8 draws per row.
  const std::vector<SamplingRow> cfgs = {
      make_row(0, 1.0f, 50, 1.0f, 0.f, 0, 0),     make_row(0, 0.8f, -1, 0.9f, 0.f, 0, 0),
      make_row(0, 1.2f, 40, 0.8f, 0.f, 0, 0),     make_row(0, 1.0f, -1, 1.0f, 0.05f, 0, 0),
      make_row(0, 0.7f, 100, 0.95f, 0.02f, 0, 0), make_row(0, 1.0f, 1, 1.0f, 0.f, 0, 0),
      make_row(0, 2.0f, -1, 0.5f, 0.f, 0, 0),     make_row(0, 0.3f, 20000, 1.0f, 0.f, 0, 0),
      make_row(0, 1.0f, -1, 0.999f, 0.f, 0, 0),   make_row(0, 0.0f, -1, 1.0f, 0.f, 0, 0),
      make_row(0, 1.0f, -1, 1.0f, 0.f, 0, 0),     make_row(0, 0.5f, 5, 0.6f, 0.3f, 0, 0)};
  const int64_t R = 256, V = 129280;
  Logits L(R, V);
  for (int64_t r = 0; r < R; ++r) fill_randn(L.row(r), V, 1.f + float(r % 5));
  Tensor d = L.device();
  std::vector<Kept> kept;
  SamplingBatch b;
  for (int64_t r = 0; r < R; ++r) {
    SamplingRow row = cfgs[size_t(r) % cfgs.size()];
    row.logits_row = r;
    row.seed = 1000 + uint64_t(r);
    b.rows.push_back(row);
    kept.push_back(row.temperature > 0 ? kept_set(L.row(r), V, row) : Kept{});
  }
  std::vector<int> outside(cfgs.size(), 0), draws(cfgs.size(), 0);
  for (int call = 0; call < 8; ++call) {
    for (auto& row : b.rows) row.position = uint64_t(call);
    auto got = g_gpu->sample(d, b);
    for (int64_t r = 0; r < R; ++r) {
      const size_t c = size_t(r) % cfgs.size();
      const int32_t t = got[size_t(r)].token;
      ++draws[c];
      if (b.rows[size_t(r)].temperature == 0) {
        outside[c] += t != host_sample(L.row(r), V, b.rows[size_t(r)]).token;
      } else {
        outside[c] += t < 0 || t >= V || (kept[size_t(r)].prob[size_t(t)] == 0 && !kept[size_t(r)].edge[size_t(t)]);
      }
    }
  }
  for (size_t c = 0; c < cfgs.size(); ++c)
    record("sampled token in kept set", fmt::format("{} ({} draws, 256-row batch)", cfg_name(cfgs[c]), draws[c]),
           outside[c], 0);
}

// Many draws from one row (replicated R times, positions all distinct): membership + chi-square.
// With `allowed`, every row carries that token mask and the expectation is the kept set of the row
// with every other logit at -inf.
void check_distribution(const char* what, const std::vector<float>& row, SamplingRow cfg, int64_t R, int calls,
                        const std::vector<int32_t>* allowed = nullptr) {
  const int64_t V = int64_t(row.size());
  Logits L(R, V);
  for (int64_t r = 0; r < R; ++r) std::copy(row.begin(), row.end(), L.row(r));
  Tensor d = L.device();
  std::vector<float> expect_row(row.size(), -INFINITY);
  if (allowed) for (int32_t t : *allowed) expect_row[size_t(t)] = row[size_t(t)];
  const Kept k = kept_set(allowed ? expect_row.data() : row.data(), V, cfg);
  std::vector<int64_t> counts(size_t(V), 0);
  int64_t outside = 0, N = 0;
  SamplingBatch b;
  for (int64_t r = 0; r < R; ++r) {
    cfg.logits_row = r;
    cfg.seed = 7;
    b.rows.push_back(cfg);
    if (allowed) runtime::add_token_mask(b, *allowed, V);
  }
  for (int call = 0; call < calls; ++call) {
    for (int64_t r = 0; r < R; ++r) b.rows[size_t(r)].position = uint64_t(call) * uint64_t(R) + uint64_t(r);
    for (const auto& s : g_gpu->sample(d, b)) {
      ++N;
      if (s.token < 0 || s.token >= V || (k.prob[size_t(s.token)] == 0 && !k.edge[size_t(s.token)])) ++outside;
      else ++counts[size_t(s.token)];
    }
  }
  record("distribution: in kept set", fmt::format("{} {} (kept {})", what, cfg_name(cfg), k.size), double(outside), 0);
  int df = 0;
  const double ratio = chi2_ratio(counts, k.prob, N, &df);
  record("distribution: chi2 / bound", fmt::format("{} {} N={} df={}", what, cfg_name(cfg), N, df), ratio, 1.0);
}

void check_distributions() {
  std::vector<float> small(40);
  fill_randn(small.data(), 40, 1.5f);
  check_distribution("V=40", small, make_row(0, 0.9f, 20, 0.9f, 0.02f, 0, 0), 1000, 40);
  check_distribution("V=40", small, make_row(0, 1.0f, -1, 1.0f, 0.f, 0, 0), 1000, 40);
  check_distribution("V=40", small, make_row(0, 1.5f, -1, 0.7f, 0.f, 0, 0), 1000, 40);
  // A peaky row of the full vocabulary: 30 likely tokens over a long tail.
  std::vector<float> peaky(129280);
  fill_randn(peaky.data(), int64_t(peaky.size()), 2.f);
  for (int i = 0; i < 30; ++i) peaky[size_t(rng()() % peaky.size())] += 12.f + float(i % 5);
  check_distribution("V=129280 peaky", peaky, make_row(0, 1.0f, -1, 0.95f, 0.f, 0, 0), 250, 80);
  check_distribution("V=129280 peaky", peaky, make_row(0, 0.8f, 10, 1.0f, 0.f, 0, 0), 250, 80);
  check_distribution("V=129280 peaky", peaky, make_row(0, 1.0f, -1, 1.0f, 0.1f, 0, 0), 250, 80);
  check_distribution("V=129280 peaky", peaky, make_row(0, 1.3f, 25, 0.9f, 0.01f, 0, 0), 250, 80);
  // Equal logits: every bin holds the whole row (bisection path); ties go to the lowest ids.
  std::vector<float> flat(129280, 1.5f);
  check_distribution("V=129280 all equal", flat, make_row(0, 1.0f, 1000, 1.0f, 0.f, 0, 0), 250, 80);
  check_distribution("V=129280 all equal", flat, make_row(0, 1.0f, -1, 0.5f, 0.f, 0, 0), 250, 8);
  // Quantised logits: thousands of equal values per bin.
  std::vector<float> quant(129280);
  fill_randn(quant.data(), int64_t(quant.size()), 3.f);
  for (float& v : quant) v = std::round(v * 2.f) / 2.f;
  check_distribution("V=129280 quantised", quant, make_row(0, 1.0f, 3000, 1.0f, 0.f, 0, 0), 250, 20);
  check_distribution("V=129280 quantised", quant, make_row(0, 1.0f, -1, 0.9f, 0.f, 0, 0), 250, 20);
}

void check_seeds() {
  const int64_t V = 129280;
  Logits L(4, V);
  fill_randn(L.x.data(), 4 * V, 1.f);  // flat enough: many likely tokens
  auto row = [](int64_t lr, uint64_t seed, uint64_t pos) { return make_row(lr, 1.0f, -1, 0.95f, 0.f, seed, pos); };
  // The same (row, seed, position) in two different batches, at different batch and logits positions.
  Logits M(4, V);
  std::copy(L.row(2), L.row(2) + V, M.row(0));
  std::copy(L.row(0), L.row(0) + V, M.row(3));
  fill_randn(M.row(1), V, 1.f);
  fill_randn(M.row(2), V, 1.f);
  SamplingBatch b1, b2;
  b1.rows = {row(0, 11, 5), row(1, 12, 5), row(2, 13, 9)};
  b2.rows = {row(1, 99, 0), row(3, 11, 5), row(0, 13, 9), row(2, 98, 1)};
  Tensor d1 = L.device(), d2 = M.device();
  auto g1 = g_gpu->sample(d1, b1), g1again = g_gpu->sample(d1, b1), g2 = g_gpu->sample(d2, b2);
  const int same = (g1[0].token == g2[1].token) + (g1[2].token == g2[2].token) + (g1[0].token == g1again[0].token) +
                   (g1[1].token == g1again[1].token) + (g1[2].token == g1again[2].token);
  record("same seed+position -> same token", "across calls and batch compositions", 5 - same, 0);
  // Other seeds (and other positions) give other draws.
  SamplingBatch bs, bp;
  std::set<int32_t> by_seed, by_pos;
  for (int i = 0; i < 64; ++i) {
    bs.rows = {row(0, 1000 + uint64_t(i), 3)};
    bp.rows = {row(0, 1000, uint64_t(i))};
    by_seed.insert(g_gpu->sample(d1, bs)[0].token);
    by_pos.insert(g_gpu->sample(d1, bp)[0].token);
  }
  record("different seeds -> different draws", fmt::format("{} distinct of 64", by_seed.size()),
         64.0 - double(by_seed.size()), 16);
  record("different positions -> different draws", fmt::format("{} distinct of 64", by_pos.size()),
         64.0 - double(by_pos.size()), 16);
}

void check_penalties() {
  struct P {
    float rep, freq, pres;
  };
  const std::vector<P> ps = {{1.3f, 0, 0}, {0.8f, 0, 0}, {1, 0.5f, 0.3f}, {1.7f, 1.2f, -0.4f}, {1, -1.0f, 0}};
  for (int64_t V : {129280, 1000}) {
    const int64_t R = 40;
    Logits L(R, V);
    fill_randn(L.x.data(), R * V, 2.f);
    std::vector<std::vector<int32_t>> hist(R);
    std::vector<size_t> plen(R);
    SamplingBatch b;
    std::vector<runtime::PenaltyTokens> pens(R);
    for (int64_t r = 0; r < R; ++r) {
      // History: the row's 12 most likely tokens (so the penalties decide the argmax), some repeated.
      std::vector<int32_t> ord(static_cast<size_t>(V));
      std::iota(ord.begin(), ord.end(), 0);
      const float* x = L.row(r);
      std::partial_sort(ord.begin(), ord.begin() + 12, ord.end(), [&](int32_t a, int32_t c) { return x[a] > x[c]; });
      plen[size_t(r)] = 5;
      for (int i = 0; i < 12; ++i) hist[size_t(r)].push_back(ord[size_t(i)]);
      for (int i = 0; i < 6; ++i) hist[size_t(r)].push_back(ord[size_t(5 + i % 3)]);
      runtime::SamplingParams sp;
      const P& pp = ps[size_t(r) % ps.size()];
      sp.temperature = 0;
      sp.repetition_penalty = pp.rep;
      sp.frequency_penalty = pp.freq;
      sp.presence_penalty = pp.pres;
      sp.logprobs = r % 2 == 0;
      sp.top_logprobs = r % 4 == 0 ? 5 : 0;
      pens[size_t(r)].update(hist[size_t(r)], plen[size_t(r)], pp.rep != 1.0f);
      runtime::add_sampling_row(b, r, sp, 1, 0, &pens[size_t(r)]);
    }
    Tensor d = L.device();
    auto got = g_gpu->sample(d, b);
    Tensor after = g_gpu->to_host_f32(d);
    int token_diff = 0, logit_diff = 0;
    double lp_err = 0;
    for (int64_t r = 0; r < R; ++r) {
      const SamplingRow& row = b.rows[size_t(r)];
      auto h = host_sample(L.row(r), V, row, hist[size_t(r)], plen[size_t(r)]);
      token_diff += got[size_t(r)].token != h.token;
      if (row.logprobs) lp_err = std::max(lp_err, double(std::fabs(got[size_t(r)].logprob - h.logprob)));
      // The penalised row, as the host sampler computes it.
      std::vector<float> ref(L.row(r), L.row(r) + V);
      std::set<int32_t> seen(hist[size_t(r)].begin(), hist[size_t(r)].end());
      std::map<int32_t, int> out;
      for (size_t i = plen[size_t(r)]; i < hist[size_t(r)].size(); ++i) ++out[hist[size_t(r)][i]];
      if (row.repetition_penalty != 1.0f)
        for (int32_t t : seen) ref[size_t(t)] = ref[size_t(t)] > 0 ? ref[size_t(t)] / row.repetition_penalty : ref[size_t(t)] * row.repetition_penalty;
      for (auto [t, n] : out) ref[size_t(t)] -= static_cast<float>(n) * row.frequency_penalty + row.presence_penalty;
      for (int64_t i = 0; i < V; ++i) logit_diff += ref[size_t(i)] != after.f32()[r * V + i];
    }
    record("penalties: greedy = host", fmt::format("V={} {} rows, 5 penalty mixes", V, R), token_diff, 0);
    record("penalties: penalised logits", fmt::format("V={} bitwise vs host", V), logit_diff, 0);
    record("penalties: logprob vs host", fmt::format("V={}", V), lp_err, 1e-4);
  }
}

void check_logprobs() {
  for (int64_t V : {129280, 1000, 37}) {
    const int64_t R = 48;
    Logits L(R, V);
    fill_randn(L.x.data(), R * V, 3.f);
    SamplingBatch b;
    const int tops[] = {0, 1, 5, 20, 64};
    const float temps[] = {0.f, 0.7f, 1.3f, 0.05f};
    for (int64_t r = 0; r < R; ++r) {
      SamplingRow row = make_row(r, temps[r % 4], r % 3 == 0 ? 40 : -1, r % 5 == 0 ? 0.9f : 1.f, 0.f, 5, uint64_t(r));
      row.logprobs = true;
      row.top_logprobs = tops[r % 5];
      b.rows.push_back(row);
    }
    Tensor d = L.device();
    auto got = g_gpu->sample(d, b);
    double err = 0;
    int id_diff = 0;
    for (int64_t r = 0; r < R; ++r) {
      const SamplingRow& row = b.rows[size_t(r)];
      auto h = host_sample(L.row(r), V, row);
      const auto& s = got[size_t(r)];
      // Logprob of the GPU's token under the host's definition (log-softmax of x / T, double).
      const float* x = L.row(r);
      const double inv_t = row.temperature == 0 ? 1.0 : 1.0 / row.temperature;
      const double top = *std::max_element(x, x + V) * inv_t;
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp(double(x[i]) * inv_t - top);
      if (s.token < 0) {
        ++id_diff;
        continue;
      }
      err = std::max(err, std::fabs(double(s.logprob) - (double(x[s.token]) * inv_t - top - std::log(sum))));
      const size_t n = std::min<size_t>(size_t(row.top_logprobs), size_t(V));
      if (s.top_logprobs.size() != n || h.top_logprobs.size() != n) {
        ++id_diff;
        continue;
      }
      for (size_t j = 0; j < n; ++j) {
        id_diff += s.top_logprobs[j].first != h.top_logprobs[j].first;
        err = std::max(err, double(std::fabs(s.top_logprobs[j].second - h.top_logprobs[j].second)));
      }
    }
    record("logprobs vs host", fmt::format("V={} greedy + sampled, T down to 0.05", V), err, 1e-4);
    record("top_logprobs ids = host", fmt::format("V={} n in 0..64", V), id_diff, 0);
  }
}

void check_bad_rows() {
  const int64_t V = 129280, R = 10;
  Logits L(R, V);
  fill_randn(L.x.data(), R * V, 2.f);
  L.row(1)[777] = NAN;
  L.row(3)[5] = INFINITY;
  std::fill(L.row(5), L.row(5) + V, -INFINITY);
  L.row(6)[0] = NAN;
  L.row(8)[V - 1] = NAN;
  SamplingBatch b;
  for (int64_t r = 0; r < R; ++r) b.rows.push_back(make_row(r, r % 2 ? 0.9f : 0.f, -1, r % 4 == 0 ? 0.9f : 1.f, 0.f, 3, 0));
  b.rows[8].logprobs = true;
  b.rows[8].top_logprobs = 3;
  Tensor d = L.device();
  auto got = g_gpu->sample(d, b);
  int wrong = 0;
  for (int64_t r = 0; r < R; ++r) {
    const bool bad = r == 1 || r == 3 || r == 5 || r == 6 || r == 8;
    if (bad) wrong += got[size_t(r)].token != -1;
    else if (b.rows[size_t(r)].temperature == 0) wrong += got[size_t(r)].token != host_sample(L.row(r), V, b.rows[size_t(r)]).token;
    else wrong += got[size_t(r)].token < 0;
  }
  record("NaN / +inf / all -inf rows fail alone", "10 rows, 5 bad", wrong, 0);
}
void check_token_masks() {
  const int64_t V = 129280, R = 64;
  Logits L(R, V);
  fill_randn(L.x.data(), R * V, 2.f);
  const size_t sizes[] = {2, 7, 50, 700, 5000, 60000, size_t(V - 1)};
  SamplingBatch b;
  std::vector<std::vector<int32_t>> allowed(R), hist(R);
  std::vector<runtime::PenaltyTokens> pens(R);
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (int64_t r = 0; r < R; ++r) {
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng());
    const size_t n = sizes[size_t(r) % 7];
    allowed[size_t(r)].assign(ids.begin(), ids.begin() + long(n));
    std::sort(allowed[size_t(r)].begin(), allowed[size_t(r)].end());
    const int32_t out_id = ids[n];  // a masked-out id: bad or huge values there must not matter
    if (r % 4 == 1) L.row(r)[out_id] = NAN;
    if (r % 4 == 2) L.row(r)[out_id] = INFINITY;
    if (r % 4 == 3) L.row(r)[out_id] = 60.f;
    runtime::SamplingParams sp;
    sp.temperature = r % 2 ? 1.0f : 0.0f;  // even rows greedy: compared token for token with the host
    if (r % 6 == 3) sp.top_k = 20;
    if (r % 10 == 5) sp.top_p = 0.9f;
    sp.logprobs = r % 4 == 0;
    sp.top_logprobs = r % 8 == 0 ? 5 : 0;
    if (r % 6 == 0) {  // penalties on allowed and masked-out tokens alike: applied before the mask, as on the host
      sp.repetition_penalty = 1.3f;
      sp.frequency_penalty = 0.4f;
      hist[size_t(r)] = {allowed[size_t(r)][0], allowed[size_t(r)][1], ids[std::min(n + 1, size_t(V) - 1)], allowed[size_t(r)][0]};
      pens[size_t(r)].update(hist[size_t(r)], 1, true);
    }
    runtime::add_sampling_row(b, r, sp, 40 + uint64_t(r), 0, &pens[size_t(r)]);
    if (r != R - 1) runtime::add_token_mask(b, allowed[size_t(r)], V);  // the last row: no mask, same batch
  }
  int greedy_diff = 0, outside = 0, draws = 0, id_diff = 0, failed = 0;
  double lp_err = 0;
  for (int call = 0; call < 8; ++call) {
    for (auto& row : b.rows) row.position = uint64_t(call);
    Tensor dc = L.device();  // fresh logits: penalties are applied in place
    auto got = g_gpu->sample(dc, b);
    for (int64_t r = 0; r < R; ++r) {
      const SamplingRow& row = b.rows[size_t(r)];
      const auto* al = r == R - 1 ? nullptr : &allowed[size_t(r)];
      const int32_t t = got[size_t(r)].token;
      if (t < 0) {
        ++failed;
        continue;
      }
      ++draws;
      if (al) outside += !std::binary_search(al->begin(), al->end(), t);
      if (row.temperature != 0 || call > 0) continue;
      auto h = host_sample(L.row(r), V, row, hist[size_t(r)], 1, al);
      greedy_diff += t != h.token;
      if (!row.logprobs) continue;
      lp_err = std::max(lp_err, double(std::fabs(got[size_t(r)].logprob - h.logprob)));
      id_diff += got[size_t(r)].top_logprobs.size() != h.top_logprobs.size();
      for (size_t j = 0; j < std::min(got[size_t(r)].top_logprobs.size(), h.top_logprobs.size()); ++j) {
        id_diff += got[size_t(r)].top_logprobs[j].first != h.top_logprobs[j].first;
        lp_err = std::max(lp_err, double(std::fabs(got[size_t(r)].top_logprobs[j].second - h.top_logprobs[j].second)));
      }
    }
  }
  record("masks: no row fails", "masked-out NaN / +inf ignored (64 rows x 8 calls)", failed, 0);
  record("masks: greedy = host with allowed", "allowed sets of 2..129279 ids, penalties on some rows", greedy_diff, 0);
  record("masks: every drawn token allowed", fmt::format("{} draws, greedy + sampled", draws), outside, 0);
  record("masks: logprobs vs host", "over the allowed tokens only", lp_err, 1e-4);
  record("masks: top_logprobs ids = host", "n = 5", id_diff, 0);
  // The distribution over a small allowed subset of a full-vocabulary row (other tokens far likelier).
  std::vector<float> row(static_cast<size_t>(V));
  fill_randn(row.data(), V, 2.f);
  std::vector<int32_t> some;
  for (int i = 0; i < 40; ++i) some.push_back(int32_t((uint64_t(i) * 3181 + 17) % uint64_t(V)));
  std::sort(some.begin(), some.end());
  for (int64_t i = 0; i < V; ++i)
    if (!std::binary_search(some.begin(), some.end(), int32_t(i))) row[size_t(i)] += 8.f;
  check_distribution("V=129280 mask of 40", row, make_row(0, 1.0f, -1, 1.0f, 0.f, 0, 0), 250, 40, &some);
  check_distribution("V=129280 mask of 40", row, make_row(0, 0.8f, 10, 0.9f, 0.f, 0, 0), 250, 40, &some);
}

}  // namespace

int main() {
  try {
    cuda::CudaOptions o;
    o.poison = true;
    g_gpu = cuda::make_cuda_backend(o);
    check_greedy();
    check_bad_rows();
    check_penalties();
    check_logprobs();
    check_seeds();
    check_membership_mixed_batch();
    check_distributions();
    check_token_masks();
    return summary("gpu_sampling_check") ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_sampling_check: error: %s\n", e.what());
    return 2;
  }
}
