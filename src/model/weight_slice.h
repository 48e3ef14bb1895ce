// The part of a checkpoint tensor one tensor-parallel rank keeps, cut on the host before the backend
// sees it: no rank converts or uploads a whole tensor it does not keep. Row slices of the row-major
// (mmapped) tensor are views; column slices are gathered into a buffer holding only the slice.
#pragma once
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "model/tensor_parallel.h"

namespace ds::model {

struct SlicedTensor {
  backend::HostTensor w;
  std::optional<backend::HostTensor> scale;  // FP8 block scales of the slice
  std::vector<char> buf_w, buf_s;            // storage of the gathered slices (w / scale point here)
};

// A linear weight [out, in] (FP8 with its [ceil(out/128), ceil(in/128)] block scales, or float) cut to
// `s`. An FP8 slice whose edges fall inside a 128 x 128 scale block (tiny test models) is dequantised
// to F32 instead: the same values the CPU backend computes with, in a form that needs no scales.
SlicedTensor slice_linear(const backend::HostTensor& w, const backend::HostTensor* scale, const Shard& s);

// A float tensor (1-D vectors: rows; 2-D tables: rows) cut to `s`.
SlicedTensor slice_tensor(const backend::HostTensor& t, const Shard& s);

}  // namespace ds::model
