// CudaBackend: a step's index data uploaded once (bind_step), and steps recorded as CUDA graphs
// (capture / replay).
//
// Index data layout on the device, one int32 buffer: ids [T] | slots [T] | seq_of_token [T] |
// pos_of_token [T] | logit rows [R] | page-table offsets [S + 1] | page tables (concatenated). A captured
// step keeps its own buffer of this layout (sized for S x pages_per_seq page entries) and its graph reads
// it; a replay only rewrites the buffer (one copy) and launches the graph.
//
// Memory a recorded step allocates comes from a pool of its own (graph_alloc_), never from the eager
// steps' allocator: the graph keeps using those addresses. Captured steps share that pool, outputs
// included: they run one at a time on the one stream and a replay's output is read before the next
// replay, so the pool only grows to the largest recording's working set, not the sum of all outputs.
#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernel_trace.h"
#include "util/log.h"

namespace ds::backend::cuda {

namespace {
struct StepLayout {
  int64_t T = 0, R = 0, S = 0, pt = 0;  // pt: page-table entries in use
  int64_t ints(int64_t pt_capacity) const { return 4 * T + R + S + 1 + pt_capacity; }
};

StepLayout layout_of(const StepIndex& s) {
  DS_CHECK(s.ids && s.slots && s.logit_rows && s.batch, "step index data is incomplete");
  const AttnBatch& b = *s.batch;
  StepLayout l;
  l.T = int64_t(s.ids->size());
  l.R = int64_t(s.logit_rows->size());
  l.S = int64_t(b.page_tables.size());
  DS_CHECK(int64_t(s.slots->size()) == l.T && int64_t(b.pos_of_token.size()) == l.T &&
               int64_t(b.seq_of_token.size()) == l.T,
           "step index data: {} ids, {} slots, {} positions, {} sequence ids", l.T, s.slots->size(),
           b.pos_of_token.size(), b.seq_of_token.size());
  for (const auto& t : b.page_tables) l.pt += int64_t(t.size());
  return l;
}

std::vector<int32_t> pack(const StepIndex& s, const StepLayout& l) {
  std::vector<int32_t> v;
  v.reserve(size_t(l.ints(l.pt)));
  const AttnBatch& b = *s.batch;
  for (const auto* part : {s.ids, s.slots, &b.seq_of_token, &b.pos_of_token, s.logit_rows})
    v.insert(v.end(), part->begin(), part->end());
  int32_t off = 0;
  v.push_back(0);
  for (const auto& t : b.page_tables) v.push_back(off += int32_t(t.size()));
  for (const auto& t : b.page_tables) v.insert(v.end(), t.begin(), t.end());
  return v;
}
}  // namespace

// A recorded step: the graph, the index buffer it reads, and the tensor its body returned.
struct CudaCapturedStep final : CapturedStep {
  cudaGraphExec_t exec = nullptr;
  StepLayout layout;
  int64_t pt_capacity = 0;
  int32_t page_size = 1;
  Tensor index_buf;
  // Where the body's result lands (its block is back in the shared pool; see the top of this file).
  void* out_ptr = nullptr;
  size_t out_bytes = 0;
  std::vector<int64_t> out_shape;
  DType out_dtype = DType::F32;
  int trace_id = -1;  // the diagnostic build's kernel table (kernel_trace.h)
  ~CudaCapturedStep() override {
    if (exec) cudaGraphExecDestroy(exec);
  }
};

void CudaBackend::bind_buffer(const StepIndex& s, const int32_t* dev) {
  const StepLayout l = layout_of(s);
  BoundStep b;
  b.idx = s;
  b.ids = dev;
  b.slots = dev + l.T;
  b.batch.seq_of_token = dev + 2 * l.T;
  b.batch.pos_of_token = dev + 3 * l.T;
  b.rows = dev + 4 * l.T;
  b.batch.pt_off = dev + 4 * l.T + l.R;
  b.batch.pt = dev + 4 * l.T + l.R + l.S + 1;
  b.batch.page_size = s.batch->page_size;
  bound_ = b;
}

void CudaBackend::bind_step(const StepIndex* s) {
  DS_CHECK(!capturing_, "bind_step while a step is being captured");
  bound_.reset();
  bound_buf_ = Tensor();
  if (!s) return;
  const StepLayout l = layout_of(*s);
  const std::vector<int32_t> v = pack(*s, l);
  bound_buf_ = empty({int64_t(v.size())}, DType::I32);
  stage_copy(bound_buf_.raw(), v.data(), v.size() * sizeof(int32_t));
  bind_buffer(*s, bound_buf_.data<int32_t>());
}

const void* CudaBackend::bound_copy(const void* data, size_t bytes) const {
  if (!bound_) return nullptr;
  const StepIndex& s = bound_->idx;
  auto is = [&](const std::vector<int32_t>* v) { return !v->empty() && v->data() == data && v->size() * 4 == bytes; };
  if (is(s.ids)) return bound_->ids;
  if (is(s.slots)) return bound_->slots;
  if (is(s.logit_rows)) return bound_->rows;
  if (is(&s.batch->pos_of_token)) return bound_->batch.pos_of_token;
  if (is(&s.batch->seq_of_token)) return bound_->batch.seq_of_token;
  return nullptr;
}

std::unique_ptr<CapturedStep> CudaBackend::capture(const StepIndex& example, int32_t pages_per_seq,
                                                   const std::function<Tensor()>& body) {
  DS_CHECK(can_capture(), "step capture is off while kernels are being profiled");
  auto g = std::make_unique<CudaCapturedStep>();
  g->layout = layout_of(example);
  g->pt_capacity = std::max<int64_t>(g->layout.pt, g->layout.S * int64_t(pages_per_seq));
  const int64_t n = g->layout.ints(g->pt_capacity);
  g->index_buf = Tensor::from_storage(persistent_alloc(size_t(n) * 4), {n}, DType::I32);
  const std::vector<int32_t> v = pack(example, g->layout);
  stage_copy(g->index_buf.raw(), v.data(), v.size() * 4);
  g->page_size = example.batch->page_size;

  bound_.reset();
  bound_buf_ = Tensor();
  bind_buffer(example, g->index_buf.data<int32_t>());
  if (!graph_alloc_) graph_alloc_ = std::make_shared<DeviceAllocator>();
  std::swap(alloc_, graph_alloc_);
  capturing_ = true;
  std::string why;
  cudaGraph_t graph = nullptr;
#ifdef DSSERVE_KERNEL_TRACE
  kernel_trace_capture_begin();
#endif
  cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    why = cudaGetErrorString(e);
  } else {
    try {
      Tensor out = body();
      DS_CHECK(out.defined() && out.device() == Device::CUDA, "a captured step must return a device tensor");
      g->out_ptr = out.raw();
      g->out_bytes = out.nbytes();
      g->out_shape = out.shape();
      g->out_dtype = out.dtype();
    } catch (const std::exception& ex) {
      why = ex.what();
    }
    join_branch();  // (a branch left open would make the capture "unjoined")
    e = cudaStreamEndCapture(stream_, &graph);
#ifdef DSSERVE_KERNEL_TRACE
    g->trace_id = kernel_trace_capture_end(g->layout.T);
#endif
    if (why.empty() && e != cudaSuccess) why = cudaGetErrorString(e);
  }
  size_t nodes = 0;
  if (why.empty()) {
    cudaGraphGetNodes(graph, nullptr, &nodes);
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    if (e != cudaSuccess) why = std::string("instantiate: ") + cudaGetErrorString(e);
  }
  if (graph) cudaGraphDestroy(graph);
  capturing_ = false;
  std::swap(alloc_, graph_alloc_);
  bound_.reset();
  if (!why.empty()) {
    cudaGetLastError();  // a failed capture leaves its error behind
    spdlog::warn("could not capture a step of {} tokens: {}", g->layout.T, why);
    return nullptr;
  }
  spdlog::debug("captured a step of {} tokens: {} graph nodes, captured-step pool {:.1f} MiB", g->layout.T, nodes,
                double(graph_alloc_->stats().in_use + graph_alloc_->stats().cached) / (1 << 20));
  return g;
}

Tensor CudaBackend::replay(CapturedStep& step, const StepIndex& idx) {
  auto* g = dynamic_cast<CudaCapturedStep*>(&step);
  DS_CHECK(g && g->exec, "replay: not a step captured by this backend");
  const StepLayout l = layout_of(idx);
  DS_CHECK(l.T == g->layout.T && l.R == g->layout.R && l.S == g->layout.S && l.pt <= g->pt_capacity,
           "replay: a step of {} tokens / {} logit rows / {} sequences / {} pages does not fit one captured for "
           "{} / {} / {} / {}",
           l.T, l.R, l.S, l.pt, g->layout.T, g->layout.R, g->layout.S, g->pt_capacity);
  DS_CHECK(idx.batch->page_size == g->page_size, "replay: page size changed");
  const std::vector<int32_t> v = pack(idx, l);
  stage_copy(g->index_buf.raw(), v.data(), v.size() * 4);
#ifdef DSSERVE_KERNEL_TRACE
  kernel_trace_replay_begin(stream_);
#endif
  DS_CUDA_CHECK(cudaGraphLaunch(g->exec, stream_));
#ifdef DSSERVE_KERNEL_TRACE
  kernel_trace_replay_end(g->trace_id, stream_);
#endif
  auto view = std::make_shared<Storage>();  // not owning: the pool keeps the memory
  view->ptr = g->out_ptr;
  view->nbytes = g->out_bytes;
  view->device = Device::CUDA;
  return Tensor::from_storage(std::move(view), g->out_shape, g->out_dtype);
}

DeviceAllocator::Stats CudaBackend::graph_memory_stats() const {
  return graph_alloc_ ? graph_alloc_->stats() : DeviceAllocator::Stats{};
}

}  // namespace ds::backend::cuda
