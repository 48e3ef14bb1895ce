#include "runtime/draft_split.h"

#include "util/error.h"

namespace ds::runtime {

DraftSplit split_draft_step(const StepInput& in, size_t keep) {
  const model::ForwardBatch& b = in.batch;
  size_t tokens = 0;
  for (const auto& sc : b.seqs) tokens += sc.tokens.size();
  DS_CHECK(in.hidden_rows.size() == tokens, "draft step: {} hidden rows for {} tokens", in.hidden_rows.size(),
           tokens);
  DraftSplit sp;
  size_t at = 0;
  for (size_t s = 0; s < b.seqs.size(); ++s) {
    const model::SequenceChunk& sc = b.seqs[s];
    const size_t n = sc.tokens.size();
    const bool drafts = sc.logits == model::LogitsMode::Last;
    DS_CHECK(drafts || sc.logits == model::LogitsMode::None, "draft step: sequence {} asks for all logits", s);
    const size_t fill = drafts ? (n > keep ? n - keep : 0) : n;
    if (fill > 0) {
      sp.fill.seqs.push_back({std::vector<int32_t>(sc.tokens.begin(), sc.tokens.begin() + long(fill)), sc.start_pos,
                              sc.page_table, model::LogitsMode::None});
      sp.fill_rows.insert(sp.fill_rows.end(), in.hidden_rows.begin() + long(at),
                          in.hidden_rows.begin() + long(at + fill));
    }
    if (drafts) {
      sp.drafting.seqs.push_back({std::vector<int32_t>(sc.tokens.begin() + long(fill), sc.tokens.end()),
                                  sc.start_pos + int32_t(fill), sc.page_table, model::LogitsMode::Last});
      sp.drafting_rows.insert(sp.drafting_rows.end(), in.hidden_rows.begin() + long(at + fill),
                              in.hidden_rows.begin() + long(at + n));
      sp.index.push_back(s);
    }
    at += n;
  }
  return sp;
}

std::vector<int32_t> flat_tokens(const model::ForwardBatch& b) {
  std::vector<int32_t> t;
  for (const auto& sc : b.seqs) t.insert(t.end(), sc.tokens.begin(), sc.tokens.end());
  return t;
}

}  // namespace ds::runtime
