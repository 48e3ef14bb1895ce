// CudaBackend: construction, memory, host <-> device copies, weights, and the element-wise / row ops.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm_batched.h"
#include "backend/cuda/gemm_lt.h"
#include "backend/cuda/pdl.cuh"
#include "util/log.h"

namespace ds::backend::cuda {

namespace {
float* f32_ptr(const Tensor& t, const char* what) {
  DS_CHECK(t.defined() && t.device() == Device::CUDA && t.dtype() == DType::F32,
           "{}: expected a CUDA F32 tensor, got {}", what, t.defined() ? t.describe() : std::string("undefined"));
  return t.data<float>();
}
const int32_t* i32_ptr(const Tensor& t, const char* what) {
  DS_CHECK(t.defined() && t.device() == Device::CUDA && t.dtype() == DType::I32,
           "{}: expected a CUDA I32 tensor, got {}", what, t.defined() ? t.describe() : std::string("undefined"));
  return t.data<int32_t>();
}

uint64_t hash_bytes(const void* p, size_t n) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, b + i, 8);
    h = (h ^ v) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  for (; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}
}  // namespace

namespace {
// An environment switch with named values: `out` keeps its default when `name` is unset; a value not in
// `choices` fails, listing them.
template <typename T>
void env_choice(const char* name, std::initializer_list<std::pair<std::string_view, T>> choices, T& out) {
  const char* v = std::getenv(name);
  if (!v) return;
  std::string names;
  for (const auto& [key, value] : choices) {
    if (key == v) {
      out = value;
      return;
    }
    names += (names.empty() ? "" : ", ") + std::string(key);
  }
  fail("{}='{}': expected one of {}", name, v, names);
}
}  // namespace

CudaOptions options_from_env(int device) {
  CudaOptions o;
  o.device = device;
  env_choice<GemmMode>("DSSERVE_CUDA_GEMM", {{"exact", GemmMode::Exact}, {"fast", GemmMode::Fast}}, o.gemm);
  if (const char* p = std::getenv("DSSERVE_CUDA_POISON")) o.poison = std::string_view(p) == "1";
  if (const char* f = std::getenv("DSSERVE_CUDA_FAST_PARTS")) o.fast_parts = parse_fast_parts(f);
  env_choice<MoePath>("DSSERVE_MOE_PATH",
                      {{"auto", MoePath::Auto}, {"grouped", MoePath::Grouped}, {"grouped-fp8", MoePath::GroupedFp8},
                       {"per-expert", MoePath::PerExpert}},
                      o.moe_path);
  env_choice<MlaKernel>("DSSERVE_MLA_KERNEL",
                        {{"auto", MlaKernel::Auto}, {"wgmma", MlaKernel::Wgmma}, {"wgmma-pair", MlaKernel::WgmmaPair},
                         {"tc", MlaKernel::Tc},
                         {"simt", MlaKernel::Simt}},
                        o.mla_kernel);
  env_choice<IndexerKernel>("DSSERVE_INDEXER_KERNEL",
                            {{"auto", IndexerKernel::Auto}, {"wgmma", IndexerKernel::Wgmma},
                             {"tc", IndexerKernel::Tc}, {"simt", IndexerKernel::Simt}},
                            o.indexer_kernel);
  env_choice<bool>("DSSERVE_FUSED_KV", {{"0", false}, {"1", true}}, o.fused_kv);
  env_choice<bool>("DSSERVE_GEMV_GROUP", {{"0", false}, {"1", true}}, o.gemv_group);
  env_choice<bool>("DSSERVE_MOE_F16_X", {{"0", false}, {"1", true}}, o.moe_f16_x);
  env_choice<bool>("DSSERVE_MOE_FUSE_SHARED", {{"0", false}, {"1", true}}, o.moe_fuse_shared);
  env_choice<int>("DSSERVE_MOE_DOWN_ROWS", {{"16", 16}, {"32", 32}}, o.moe_down_rows);
  env_choice<bool>("DSSERVE_MOE_STREAM", {{"0", false}, {"1", true}}, o.moe_stream_weights);
  env_choice<int>("DSSERVE_MOE_FP8_TILE", {{"auto", 0}, {"64", 64}, {"128", 128}}, o.moe_fp8_tile_rows);
  env_choice<bool>("DSSERVE_OVERLAP", {{"0", false}, {"1", true}}, o.overlap);
  env_choice<int>("DSSERVE_MLA_SPLIT_STEPS", {{"1", 1}, {"2", 2}, {"4", 4}}, o.mla_split_steps);
  env_choice<bool>("DSSERVE_MLA_Q_ASYNC", {{"0", false}, {"1", true}}, o.mla_q_async);
  return o;
}

// "fp8_act,tc_indexer" -> a FastPart mask; "all" / "none" (or empty) as they say.
uint32_t parse_fast_parts(std::string_view list) {
  static const std::pair<std::string_view, uint32_t> names[] = {
      {"fp8_act", kFastFp8Act},         {"bf16_gemm", kFastBf16Gemm},   {"tf32_absorb", kFastTf32Absorb},
      {"tc_attention", kFastTcAttention}, {"tc_indexer", kFastTcIndexer},
      {"tf32_gemv", kFastTf32Gemv},     {"bf16_absorb", kFastBf16Absorb}, {"default", kFastDefault},
      {"all", kFastAll},
      {"none", 0}};
  uint32_t mask = 0;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (item.empty()) continue;
    auto it = std::find_if(std::begin(names), std::end(names), [&](const auto& n) { return n.first == item; });
    if (it == std::end(names))
      fail("DSSERVE_CUDA_FAST_PARTS: '{}' is not one of fp8_act, bf16_gemm, tf32_absorb, tc_attention, tc_indexer, "
           "tf32_gemv, bf16_absorb, default, all, none", item);
    mask |= it->second;
  }
  return mask;
}

int64_t CudaBackend::free_device_memory() const {
  DS_CUDA_CHECK(cudaSetDevice(opts_.device));  // cudaMemGetInfo answers for the current device
  size_t free = 0, total = 0;
  DS_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return int64_t(free);
}

CudaBackend::CudaBackend(const CudaOptions& o) : opts_(o), moe_path_(o.moe_path) {
  int n = 0;
  DS_CUDA_CHECK(cudaGetDeviceCount(&n));
  DS_CHECK(o.device >= 0 && o.device < n, "CUDA device {} does not exist ({} visible)", o.device, n);
  DS_CUDA_CHECK(cudaSetDevice(o.device));
  cudaDeviceProp prop;
  DS_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
  num_sms_ = prop.multiProcessorCount;
  if (prop.major < 9) pdl_flag() = false;  // programmatic dependent launch (pdl.cuh) needs sm_90
  DS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  DS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_), pinned_size_));
  DS_CUDA_CHECK(cudaEventCreateWithFlags(&ring_event_, cudaEventDisableTiming));
  alloc_ = std::make_shared<DeviceAllocator>();
  lt_ = std::make_unique<LtGemm>();
  gemv_counters_ = Tensor::from_storage(persistent_alloc(kGemvMaxCounters * 4), {kGemvMaxCounters}, DType::I32);
  DS_CUDA_CHECK(cudaMemsetAsync(gemv_counters_.raw(), 0, kGemvMaxCounters * 4, stream_));
  if (o.overlap) make_side_lane();
  spdlog::info("CUDA backend on device {}: {} ({} SMs, {:.1f} GiB, sm_{}{}), GEMM mode {}{}", o.device, prop.name,
               num_sms_, double(prop.totalGlobalMem) / (1 << 30), prop.major, prop.minor,
               o.gemm == GemmMode::Fast ? "fast" : "exact",
               o.gemm == GemmMode::Fast && o.fast_parts != kFastDefault ? fmt::format(" (parts mask {})", o.fast_parts)
                                                                   : std::string());
  if (prop.major != 9) spdlog::warn("the CUDA backend is built for Hopper (sm_90a); this device is sm_{}{}", prop.major, prop.minor);
}

void CudaBackend::make_current() { DS_CUDA_CHECK(cudaSetDevice(opts_.device)); }

CudaBackend::~CudaBackend() {
  cudaSetDevice(opts_.device);
  cudaStreamSynchronize(stream_);
  if (side_.stream) cudaStreamSynchronize(side_.stream);
  uploads_.clear();
  lt_.reset();
  batched_.reset();
  side_.lt.reset();
  side_.batched.reset();
  side_.gemv_counters = Tensor();
  if (side_.stream) cudaStreamDestroy(side_.stream);
  if (fork_event_) cudaEventDestroy(fork_event_);
  if (join_event_) cudaEventDestroy(join_event_);
  cudaEventDestroy(ring_event_);
  cudaFreeHost(pinned_);
  if (xfer_pinned_) cudaFreeHost(xfer_pinned_);
  cudaStreamDestroy(stream_);
}

void CudaBackend::synchronize() {
  DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (side_.stream) DS_CUDA_CHECK(cudaStreamSynchronize(side_.stream));
}

// Host -> device on the backend's stream, finished when this returns. (A plain cudaMemcpy runs on the
// legacy default stream, which a non-blocking stream does not wait for, and from pageable memory it may
// return before the data has landed: kernels on stream_ could read the old contents.)
void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail("CUDA kernel launch failed in {}: {}", what, cudaGetErrorString(e));
}

// ---------------------------------------------------------------- memory

Tensor CudaBackend::empty(std::vector<int64_t> shape, DType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const size_t bytes = size_t(n) * dtype_size(dtype);
  Tensor t = Tensor::from_storage(alloc_->allocate(bytes), std::move(shape), dtype);
  if (opts_.poison && bytes >= 4) {
    launch_fill_u32(t.raw(), 0x7FC07FC0u, bytes / 4, stream_);
    check_launch("poison");
  }
  return t;
}

Tensor CudaBackend::alloc(std::vector<int64_t> shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  if (t.nbytes()) DS_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), stream_));
  return t;
}

Tensor CudaBackend::to_host(const Tensor& t) {
  if (t.device() == Device::CPU) return t;
  Tensor h = Tensor::empty(t.shape(), t.dtype());
  if (t.nbytes()) {
    DS_CUDA_CHECK(cudaMemcpyAsync(h.raw(), t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, stream_));
    DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  return h;
}

Tensor CudaBackend::to_host_f32(const Tensor& t) {
  Tensor h = to_host(t);
  if (h.dtype() == DType::F32) return h;
  Tensor f = Tensor::empty(h.shape(), DType::F32);
  const int64_t n = h.numel();
  switch (h.dtype()) {
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) f.f32()[i] = bf16_to_f32(h.data<uint16_t>()[i]);
      break;
    case DType::I32:
      for (int64_t i = 0; i < n; ++i) f.f32()[i] = float(h.data<int32_t>()[i]);
      break;
    default: fail("to_host_f32: cannot convert {}", h.describe());
  }
  return f;
}

Tensor CudaBackend::from_host(const Tensor& t) {
  if (t.device() == Device::CUDA) return t;
  Tensor d = empty(t.shape(), t.dtype());
  copy_to_device(d.raw(), t.raw(), t.nbytes());
  return d;
}

// Page-locked and portable (any of the process's GPUs copies it directly). Where the system refuses to lock
// more memory, plain memory still works: the row copies then stage it.
HostBytes CudaBackend::alloc_host_bytes(size_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) == cudaSuccess)
    return HostBytes(static_cast<uint8_t*>(p), bytes, [](uint8_t* q, size_t) { cudaFreeHost(q); });
  cudaGetLastError();  // clear the failed allocation's error
  spdlog::warn("could not page-lock {} MB of host memory; using pageable memory (slower device copies)", bytes >> 20);
  return Backend::alloc_host_bytes(bytes);
}

// Rows between a pool and host memory in chunks of up to kXferChunk bytes: gathered into (scattered from)
// a contiguous device buffer by one kernel, then one copy per chunk. Host memory that is page-locked
// (alloc_host_bytes) is copied straight, every chunk queued back to back; pageable memory goes through
// page-locked staging and a memcpy, one chunk at a time.
namespace {
constexpr size_t kXferChunk = size_t(16) << 20;

bool page_locked(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}
}  // namespace

// The checks, the staging and the chunking both directions share: chunk(first, n, device_rows, buf, bytes)
// per chunk of n rows starting at rows[first]; buf holds their bytes on the device. `direct`: the host side
// is page-locked, so chunks follow each other on the stream (buf is reused in stream order) and one
// synchronisation ends the call; otherwise each chunk is finished before the staging is reused.
template <typename Chunk>
void CudaBackend::for_each_xfer_chunk(const Tensor& pool, const std::vector<int32_t>& rows, const char* op,
                                      bool direct, Chunk chunk) {
  DS_CHECK(pool.device() == Device::CUDA, "{}: pool {} is not on the GPU", op, pool.describe());
  const size_t rb = size_t(pool.row_size()) * dtype_size(pool.dtype());
  for (int32_t r : rows) DS_CHECK(r >= 0 && r < pool.dim(0), "{}: row {} outside the pool of {}", op, r, pool.dim(0));
  if (rows.empty() || rb == 0) return;
  DS_CHECK(rb <= kXferChunk, "{}: rows of {} bytes", op, rb);
  if (!direct && !xfer_pinned_) DS_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&xfer_pinned_), kXferChunk));
  const size_t per = kXferChunk / rb;
  Tensor buf = empty({int64_t(std::min(per, rows.size()) * rb)}, DType::U8);
  for (size_t r0 = 0; r0 < rows.size(); r0 += per) {
    const size_t n = std::min(per, rows.size() - r0);
    const std::vector<int32_t> idx(rows.begin() + long(r0), rows.begin() + long(r0 + n));
    chunk(r0, n, upload_i32(idx), buf, rb);
    check_launch(op);
    if (!direct) DS_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the staging is reused by the next chunk
  }
  if (direct) DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::gather_rows_to_host(void* dst, const Tensor& pool, const std::vector<int32_t>& rows) {
  const bool direct = page_locked(dst);
  for_each_xfer_chunk(pool, rows, "gather_rows_to_host", direct,
                      [&](size_t r0, size_t n, const int32_t* idx, Tensor& buf, size_t rb) {
                        char* to = static_cast<char*>(dst) + r0 * rb;
                        launch_gather_bytes(pool.raw(), rb, idx, int(n), buf.raw(), stream_);
                        DS_CUDA_CHECK(cudaMemcpyAsync(direct ? to : xfer_pinned_, buf.raw(), n * rb,
                                                      cudaMemcpyDeviceToHost, stream_));
                        if (direct) return;
                        DS_CUDA_CHECK(cudaStreamSynchronize(stream_));
                        std::memcpy(to, xfer_pinned_, n * rb);
                      });
}

void CudaBackend::scatter_rows_from_host(Tensor& pool, const std::vector<int32_t>& rows, const void* src) {
  const bool direct = page_locked(src);
  for_each_xfer_chunk(pool, rows, "scatter_rows_from_host", direct,
                      [&](size_t r0, size_t n, const int32_t* idx, Tensor& buf, size_t rb) {
                        const char* from = static_cast<const char*>(src) + r0 * rb;
                        if (!direct) std::memcpy(xfer_pinned_, from, n * rb);
                        DS_CUDA_CHECK(cudaMemcpyAsync(buf.raw(), direct ? from : xfer_pinned_, n * rb,
                                                      cudaMemcpyHostToDevice, stream_));
                        launch_scatter_bytes(pool.raw(), rb, idx, int(n), buf.raw(), stream_);
                      });
}

const void* CudaBackend::upload_bytes(const void* data, size_t bytes) {
  if (const void* d = bound_copy(data, bytes)) return d;
  // A recorded step would bake this step's values in: everything it reads must be in its index data.
  DS_CHECK(!capturing_, "step capture: an op uploads {} bytes that are not part of the step's index data", bytes);
  const uint64_t h = hash_bytes(data, bytes);
  ++upload_clock_;
  for (auto& u : uploads_)
    if ((u.lane < 0 || u.lane == lane_) && u.hash == h && u.host.size() == bytes &&
        std::memcmp(u.host.data(), data, bytes) == 0) {
      u.last_use = upload_clock_;
      return u.dev.raw();
    }
  constexpr size_t kKeep = 64;
  Upload* slot = nullptr;
  if (uploads_.size() < kKeep) {
    slot = &uploads_.emplace_back();
  } else {
    slot = &*std::min_element(uploads_.begin(), uploads_.end(),
                              [](const Upload& a, const Upload& b) { return a.last_use < b.last_use; });
  }
  slot->hash = h;
  slot->host.assign(static_cast<const char*>(data), static_cast<const char*>(data) + bytes);
  slot->last_use = upload_clock_;
  slot->lane = branch_open_ || lane_ != 0 ? lane_ : -1;  // its copy is ordered on this lane only until the join
  slot->dev = Tensor::from_storage(alloc_->allocate(bytes ? bytes : 4), {int64_t(bytes ? bytes : 4)}, DType::U8);
  stage_copy(slot->dev.raw(), data, bytes);
  return slot->dev.raw();
}

void CudaBackend::stage_copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const size_t need = (bytes + 255) / 256 * 256;
  if (need > pinned_size_) {
    copy_to_device(dst, src, bytes);
    return;
  }
  if (pinned_pos_ + need > pinned_size_) {  // wrap: every copy from the ring must have finished
    DS_CUDA_CHECK(cudaEventRecord(ring_event_, stream_));
    DS_CUDA_CHECK(cudaEventSynchronize(ring_event_));
    if (side_.stream) DS_CUDA_CHECK(cudaStreamSynchronize(side_.stream));  // (the other lane's copies too)
    pinned_pos_ = 0;
  }
  std::memcpy(pinned_ + pinned_pos_, src, bytes);
  DS_CUDA_CHECK(cudaMemcpyAsync(dst, pinned_ + pinned_pos_, bytes, cudaMemcpyHostToDevice, stream_));
  pinned_pos_ += need;
}

const int32_t* CudaBackend::upload_i32(const std::vector<int32_t>& v) {
  return static_cast<const int32_t*>(upload_bytes(v.data(), v.size() * sizeof(int32_t)));
}
const float* CudaBackend::upload_f32(const std::vector<float>& v) {
  return static_cast<const float*>(upload_bytes(v.data(), v.size() * sizeof(float)));
}

DevBatch CudaBackend::dev_batch(const AttnBatch& b) {
  if (bound_ && bound_->idx.batch == &b) return bound_->batch;
  std::vector<int32_t> pt, off{0};
  for (const auto& t : b.page_tables) {
    pt.insert(pt.end(), t.begin(), t.end());
    off.push_back(int32_t(pt.size()));
  }
  DevBatch d;
  d.seq_of_token = upload_i32(b.seq_of_token);
  d.pos_of_token = upload_i32(b.pos_of_token);
  d.pt = upload_i32(pt);
  d.pt_off = upload_i32(off);
  d.page_size = b.page_size;
  return d;
}

// ---------------------------------------------------------------- weights

LinearWeight CudaBackend::load_linear(const HostTensor& w, const HostTensor* scale_inv) {
  DS_CHECK(w.shape.size() == 2, "linear weight '{}' must be 2-D", w.name);
  LinearWeight lw;
  lw.out_features = w.shape[0];
  lw.in_features = w.shape[1];
  const int64_t N = lw.out_features, K = lw.in_features;
  if (w.dtype == DType::F8_E4M3) {
    DS_CHECK(scale_inv != nullptr, "FP8 weight '{}' needs its weight_scale_inv", w.name);
    const int64_t nb = (N + 127) / 128, kb = (K + 127) / 128, pitch = fp8_scale_pitch(kb);
    DS_CHECK(scale_inv->shape == std::vector<int64_t>({nb, kb}), "scale of '{}' must be [{}, {}]", w.name, nb, kb);
    lw.w = Tensor::from_storage(persistent_alloc(size_t(N * K)), {N, K}, DType::F8_E4M3);
    copy_to_device(lw.w.raw(), w.data, size_t(N * K));
    // Scales as fp32 [nb, pitch]: K blocks fastest, rows padded to 4 (16 bytes) as cuBLASLt wants.
    std::vector<float> s(size_t(nb * kb)), padded(size_t(nb * pitch), 0.0f);
    cpu::host_to_f32(*scale_inv, nullptr, s.data());
    for (int64_t r = 0; r < nb; ++r) std::copy_n(s.data() + r * kb, kb, padded.data() + r * pitch);
    lw.scale = Tensor::from_storage(persistent_alloc(padded.size() * 4), {nb, pitch}, DType::F32);
    copy_to_device(lw.scale.raw(), padded.data(), padded.size() * 4);
  } else if (w.dtype == DType::BF16) {
    lw.w = Tensor::from_storage(persistent_alloc(size_t(N * K) * 2), {N, K}, DType::BF16);
    copy_to_device(lw.w.raw(), w.data, size_t(N * K) * 2);
  } else {  // F32 / F16: kept in fp32
    std::vector<float> f(size_t(N * K));
    cpu::host_to_f32(w, nullptr, f.data());
    lw.w = Tensor::from_storage(persistent_alloc(f.size() * 4), {N, K}, DType::F32);
    copy_to_device(lw.w.raw(), f.data(), f.size() * 4);
  }
  return lw;
}

Tensor CudaBackend::load_tensor_f32(const HostTensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  // 2-D BF16 tables (the embedding) stay BF16: half the memory; embedding() converts rows on the fly.
  if (t.dtype == DType::BF16 && t.shape.size() == 2) {
    Tensor d = Tensor::from_storage(persistent_alloc(size_t(n) * 2), t.shape, DType::BF16);
    copy_to_device(d.raw(), t.data, size_t(n) * 2);
    return d;
  }
  std::vector<float> f(static_cast<size_t>(n));
  cpu::host_to_f32(t, nullptr, f.data());
  Tensor d = Tensor::from_storage(persistent_alloc(f.size() * 4), t.shape, DType::F32);
  copy_to_device(d.raw(), f.data(), f.size() * 4);
  return d;
}

// ---------------------------------------------------------------- dense ops

Tensor CudaBackend::embedding(const Tensor& table, const std::vector<int32_t>& ids) {
  for (int32_t id : ids) DS_CHECK(id >= 0 && id < table.dim(0), "token id {} is outside the vocabulary [0, {})", id, table.dim(0));
  return embedding_part(table, ids, 0);
}

Tensor CudaBackend::embedding_ids(const Tensor& table, const Tensor& ids, int64_t first) {
  DS_CHECK(table.device() == Device::CUDA && table.ndim() == 2 &&
               (table.dtype() == DType::F32 || table.dtype() == DType::BF16) && ids.dtype() == DType::I32 &&
               ids.device() == Device::CUDA,
           "embedding_ids: table {}, ids {}", table.describe(), ids.describe());
  const int64_t V = table.dim(0), H = table.dim(1), T = ids.numel();
  Tensor out = empty({T, H}, DType::F32);
  if (T == 0) return out;
  launch_embedding(table.raw(), table.dtype() == DType::BF16, ids.data<int32_t>(), int(T), int(H), out.data<float>(),
                   int(first), int(V), stream_);
  check_launch("embedding");
  return out;
}

void CudaBackend::argmax_rows(const Tensor& logits, Tensor& ids) {
  const int64_t R = logits.dim(0), V = logits.row_size();
  DS_CHECK(logits.dtype() == DType::F32 && logits.device() == Device::CUDA && ids.dtype() == DType::I32 &&
               ids.device() == Device::CUDA && ids.numel() >= R,
           "argmax_rows: {} into {}", logits.describe(), ids.describe());
  launch_argmax_rows(logits.data<float>(), int(R), int(V), ids.data<int32_t>(), stream_);
  check_launch("argmax_rows");
}

static_assert(Backend::kMaxRescoreCandidates <= 8, "k_rescore_topk.cu keeps 8 candidates per thread");

void CudaBackend::rescore_topk(Tensor& logits, const Tensor& x, const LinearWeight& w, int k) {
  const int64_t R = logits.dim(0), V = logits.row_size(), H = w.in_features;
  DS_CHECK(logits.device() == Device::CUDA && logits.dtype() == DType::F32 && x.device() == Device::CUDA &&
               x.dtype() == DType::F32 && x.dim(0) == R && x.row_size() == H && V <= w.out_features &&
               (w.w.dtype() == DType::BF16 || w.w.dtype() == DType::F32) && k >= 1 && k <= kMaxRescoreCandidates,
           "rescore_topk: logits {}, x {}, w {}, k {}", logits.describe(), x.describe(), w.w.describe(), k);
  launch_rescore_topk(logits.data<float>(), int(R), int(V), x.data<float>(), w.w.raw(), w.w.dtype() == DType::BF16,
                      int(H), k, stream_);
  check_launch("rescore_topk");
}

Tensor CudaBackend::embedding_part(const Tensor& table, const std::vector<int32_t>& ids, int64_t first) {
  DS_CHECK(table.device() == Device::CUDA && table.ndim() == 2 &&
               (table.dtype() == DType::F32 || table.dtype() == DType::BF16),
           "embedding: table is {}", table.describe());
  const int64_t V = table.dim(0), H = table.dim(1), T = int64_t(ids.size());
  Tensor out = empty({T, H}, DType::F32);
  if (T == 0) return out;
  launch_embedding(table.raw(), table.dtype() == DType::BF16, upload_i32(ids), int(T), int(H), out.data<float>(),
                   int(first), int(V), stream_);
  check_launch("embedding");
  return out;
}

Tensor CudaBackend::rmsnorm(const Tensor& x, const Tensor& w, float eps) {
  const int64_t T = x.dim(0), n = x.row_size();
  DS_CHECK(w.numel() == n, "rmsnorm: weight has {} elements, rows have {}", w.numel(), n);
  Tensor y = empty({T, n}, DType::F32);
  launch_rmsnorm(f32_ptr(x, "rmsnorm"), nullptr, f32_ptr(w, "rmsnorm weight"), y.data<float>(), int(T), int(n), eps,
                 stream_);
  check_launch("rmsnorm");
  return y;
}

Tensor CudaBackend::add_rmsnorm(const Tensor& x, Tensor& residual, const Tensor& w, float eps) {
  const int64_t T = residual.dim(0), n = residual.row_size();
  DS_CHECK(x.numel() == residual.numel() && w.numel() == n, "add_rmsnorm: {} + {} with weight {}", x.describe(),
           residual.describe(), w.describe());
  Tensor y = empty({T, n}, DType::F32);
  launch_rmsnorm(f32_ptr(x, "add_rmsnorm"), f32_ptr(residual, "add_rmsnorm residual"), f32_ptr(w, "add_rmsnorm weight"),
                 y.data<float>(), int(T), int(n), eps, stream_);
  check_launch("add_rmsnorm");
  return y;
}

Tensor CudaBackend::layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps) {
  const int64_t T = x.dim(0), n = x.row_size();
  DS_CHECK(w.numel() == n && b.numel() == n, "layernorm: weight {} / bias {} for rows of {}", w.describe(),
           b.describe(), n);
  Tensor y = empty({T, n}, DType::F32);
  launch_layernorm(f32_ptr(x, "layernorm"), f32_ptr(w, "layernorm weight"), f32_ptr(b, "layernorm bias"),
                   y.data<float>(), int(T), int(n), eps, stream_);
  check_launch("layernorm");
  return y;
}

void CudaBackend::add_inplace(Tensor& y, const Tensor& x) {
  DS_CHECK(y.numel() == x.numel(), "add: {} vs {}", y.describe(), x.describe());
  launch_add(f32_ptr(y, "add"), f32_ptr(x, "add"), size_t(y.numel()), stream_);
  check_launch("add");
}

void CudaBackend::scale_inplace(Tensor& y, float s) {
  launch_scale(f32_ptr(y, "scale"), s, size_t(y.numel()), stream_);
  check_launch("scale");
}

void CudaBackend::rope(Tensor& x, int64_t col0, int64_t head_stride, int64_t nheads, int64_t rot_dim,
                       const std::vector<int32_t>& pos, const RopeTable& table, RopeLayout layout) {
  const int64_t T = x.dim(0), row = x.row_size(), half = rot_dim / 2;
  DS_CHECK(int64_t(pos.size()) == T && int64_t(table.inv_freq.size()) == half, "rope: bad positions or table");
  DS_CHECK(half <= kMaxRopeHalf, "rope: rotary dim {} exceeds {}", rot_dim, 2 * kMaxRopeHalf);
  DS_CHECK(col0 + (nheads - 1) * head_stride + rot_dim <= row, "rope: heads exceed the row of {}", x.describe());
  if (T == 0) return;
  RopeFreqs f{};
  std::copy(table.inv_freq.begin(), table.inv_freq.end(), f.inv_freq);
  launch_rope(f32_ptr(x, "rope"), int(T), int(row), int(col0), int(head_stride), int(nheads), int(rot_dim),
              upload_i32(pos), f, table.attention_factor, layout == RopeLayout::Interleaved, stream_);
  check_launch("rope");
}

Tensor CudaBackend::silu_mul(const Tensor& gate, const Tensor& up) {
  DS_CHECK(gate.numel() == up.numel(), "silu_mul: {} vs {}", gate.describe(), up.describe());
  Tensor y = empty(gate.shape(), DType::F32);
  launch_silu_mul(f32_ptr(gate, "silu_mul"), f32_ptr(up, "silu_mul"), y.data<float>(), size_t(y.numel()), stream_);
  check_launch("silu_mul");
  return y;
}

void CudaBackend::copy_cols(Tensor& dst, int64_t dst_col0, const Tensor& src, int64_t src_col0, int64_t ncols) {
  const int64_t T = src.dim(0), ds = dst.row_size(), ss = src.row_size();
  DS_CHECK(dst.dim(0) == T && dst_col0 + ncols <= ds && src_col0 + ncols <= ss && dst.dtype() == src.dtype() &&
               dst.device() == Device::CUDA && src.device() == Device::CUDA,
           "copy_cols: {} <- {}", dst.describe(), src.describe());
  if (T == 0 || ncols == 0) return;
  const size_t e = dtype_size(src.dtype());
  launch_copy_cols(static_cast<char*>(dst.raw()) + dst_col0 * e, ds * e, static_cast<const char*>(src.raw()) + src_col0 * e,
                   ss * e, ncols * e, T, stream_);
  check_launch("copy_cols");
}

// ---------------------------------------------------------------- KV pools

void CudaBackend::cache_write(Tensor& pool, int64_t col0, const Tensor& rows, const std::vector<int32_t>& slots) {
  const int64_t D = pool.row_size(), n = rows.row_size();
  DS_CHECK(int64_t(slots.size()) == rows.dim(0) && col0 + n <= D, "cache_write: {} rows into {}", rows.describe(),
           pool.describe());
  for (int32_t s : slots)  // -1: a padding row, written nowhere
    DS_CHECK(s >= -1 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
  if (slots.empty()) return;
  if (pool.dtype() == DType::BF16) {
    DS_CHECK(pool.device() == Device::CUDA, "cache_write: pool {} is not on the GPU", pool.describe());
    launch_cache_write_bf16(pool.data<uint16_t>(), int(D), int(col0), f32_ptr(rows, "cache_write rows"), int(n),
                            upload_i32(slots), int(slots.size()), stream_);
  } else {
    launch_cache_write(f32_ptr(pool, "cache_write pool"), int(D), int(col0), f32_ptr(rows, "cache_write rows"),
                       int(n), upload_i32(slots), int(slots.size()), stream_);
  }
  check_launch("cache_write");
}

Tensor CudaBackend::cache_gather(const Tensor& pool, const std::vector<int32_t>& slots) {
  const int64_t D = pool.row_size();
  for (int32_t s : slots) DS_CHECK(s >= 0 && s < pool.dim(0), "cache slot {} outside the pool of {}", s, pool.dim(0));
  Tensor out = empty({int64_t(slots.size()), D}, DType::F32);
  if (slots.empty()) return out;
  if (pool.dtype() == DType::BF16) {
    DS_CHECK(pool.device() == Device::CUDA, "cache_gather: pool {} is not on the GPU", pool.describe());
    launch_gather_rows_bf16(pool.data<uint16_t>(), int(D), upload_i32(slots), int(slots.size()), out.data<float>(),
                            stream_);
  } else {
    launch_gather_rows(f32_ptr(pool, "cache_gather"), int(D), upload_i32(slots), int(slots.size()),
                       out.data<float>(), stream_);
  }
  check_launch("cache_gather");
  return out;
}

Tensor CudaBackend::causal_index(const AttnBatch& batch) {
  const int64_t T = int64_t(batch.pos_of_token.size());
  const int64_t K = context_width(batch);
  Tensor idx = empty({T, K}, DType::I32);
  if (T && K) {
    launch_causal_index(upload_i32(batch.pos_of_token), int(T), int(K), idx.data<int32_t>(), stream_);
    check_launch("causal_index");
  }
  return idx;
}

std::unique_ptr<CudaBackend> make_cuda_backend(const CudaOptions& o) { return std::make_unique<CudaBackend>(o); }

}  // namespace ds::backend::cuda

namespace ds::backend {
std::unique_ptr<Backend> make_cuda_backend(int device) {
  return cuda::make_cuda_backend(cuda::options_from_env(device));
}
}  // namespace ds::backend
