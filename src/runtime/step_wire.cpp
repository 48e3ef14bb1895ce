#include "runtime/step_wire.h"

#include <cstring>

#include "util/error.h"

namespace ds::runtime {

namespace {
constexpr uint32_t kMagic = 0x53545031;  // "STP1"

struct Writer {
  std::string out;
  template <typename T>
  void pod(T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void ints(const std::vector<int32_t>& v) {
    pod(uint32_t(v.size()));
    out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
  }
};

struct Reader {
  const std::string& in;
  size_t at = 0;
  template <typename T>
  T pod() {
    DS_CHECK(at + sizeof(T) <= in.size(), "a step message ends early ({} bytes)", in.size());
    T v;
    std::memcpy(&v, in.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  std::vector<int32_t> ints() {
    const uint32_t n = pod<uint32_t>();
    DS_CHECK(at + size_t(n) * 4 <= in.size(), "a step message ends early ({} bytes)", in.size());
    std::vector<int32_t> v(n);
    std::memcpy(v.data(), in.data() + at, size_t(n) * 4);
    at += size_t(n) * 4;
    return v;
  }
};
}  // namespace

std::string encode_step(const StepInput& in) {
  Writer w;
  w.pod(kMagic);
  w.pod(uint8_t(in.mode));
  w.pod(uint8_t(in.batch.want_hidden));
  w.pod(in.batch.dp_decode_bs);
  w.pod(in.batch.dp_verify_q);
  w.ints(in.batch.dp_tokens);
  w.pod(uint8_t(in.keep_hidden));
  w.pod(uint8_t(in.sample_per_row));
  w.ints(in.hidden_rows);
  w.ints(in.dp_drafting);
  w.pod(uint32_t(in.sample.size()));
  w.pod(uint32_t(in.batch.seqs.size()));
  for (const auto& s : in.batch.seqs) {
    w.ints(s.tokens);
    w.pod(s.start_pos);
    w.ints(s.page_table);
    w.pod(uint8_t(s.logits));
  }
  return std::move(w.out);
}

StepInput decode_step(const std::string& bytes) {
  Reader r{bytes};
  DS_CHECK(r.pod<uint32_t>() == kMagic, "not a step message");
  StepInput in;
  in.mode = ForwardMode(r.pod<uint8_t>());
  in.batch.want_hidden = r.pod<uint8_t>() != 0;
  in.batch.dp_decode_bs = r.pod<int32_t>();
  in.batch.dp_verify_q = r.pod<int32_t>();
  in.batch.dp_tokens = r.ints();
  in.keep_hidden = r.pod<uint8_t>() != 0;
  in.sample_per_row = r.pod<uint8_t>() != 0;
  in.hidden_rows = r.ints();
  in.dp_drafting = r.ints();
  in.sample.resize(r.pod<uint32_t>());
  const uint32_t n = r.pod<uint32_t>();
  for (uint32_t i = 0; i < n; ++i) {
    model::SequenceChunk s;
    s.tokens = r.ints();
    s.start_pos = r.pod<int32_t>();
    s.page_table = r.ints();
    s.logits = model::LogitsMode(r.pod<uint8_t>());
    in.batch.seqs.push_back(std::move(s));
  }
  DS_CHECK(r.at == bytes.size(), "a step message has {} trailing bytes", bytes.size() - r.at);
  return in;
}

}  // namespace ds::runtime
