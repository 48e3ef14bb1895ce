// The step message other nodes' ranks run (runtime/step_wire.h): every field survives the round trip, and
// bytes that are not a step are refused instead of being run.
#include <gtest/gtest.h>

#include "runtime/step_wire.h"

using namespace ds;
using namespace ds::runtime;

TEST(StepWire, RoundTripKeepsEveryField) {
  StepInput in;
  in.mode = ForwardMode::Mixed;
  in.batch.want_hidden = true;
  in.batch.dp_tokens = {5, 0, 7};
  in.batch.dp_decode_bs = 3;
  in.batch.dp_verify_q = 4;
  in.keep_hidden = true;
  in.sample_per_row = true;
  in.hidden_rows = {4, 2, 9};
  in.dp_drafting = {1, 0, 2};
  for (int s = 0; s < 3; ++s) {
    model::SequenceChunk c;
    for (int t = 0; t <= s * 4; ++t) c.tokens.push_back(100 * s + t);
    c.start_pos = 17 * s;
    c.page_table = {s, s + 10, s + 20};
    c.logits = s == 0 ? model::LogitsMode::None : s == 1 ? model::LogitsMode::Last : model::LogitsMode::All;
    in.batch.seqs.push_back(c);
  }
  in.sample.resize(3);
  const std::string bytes = encode_step(in);
  StepInput out = decode_step(bytes);
  EXPECT_EQ(out.mode, in.mode);
  EXPECT_EQ(out.batch.want_hidden, true);
  EXPECT_EQ(out.batch.dp_tokens, in.batch.dp_tokens);
  EXPECT_EQ(out.batch.dp_decode_bs, 3);
  EXPECT_EQ(out.batch.dp_verify_q, 4);
  EXPECT_TRUE(out.keep_hidden);
  EXPECT_TRUE(out.sample_per_row);
  EXPECT_EQ(out.hidden_rows, in.hidden_rows);
  EXPECT_EQ(out.dp_drafting, in.dp_drafting);
  EXPECT_EQ(out.sample.size(), 3u);
  ASSERT_EQ(out.batch.seqs.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(out.batch.seqs[s].tokens, in.batch.seqs[s].tokens);
    EXPECT_EQ(out.batch.seqs[s].start_pos, in.batch.seqs[s].start_pos);
    EXPECT_EQ(out.batch.seqs[s].page_table, in.batch.seqs[s].page_table);
    EXPECT_EQ(out.batch.seqs[s].logits, in.batch.seqs[s].logits);
  }
  EXPECT_THROW(decode_step(bytes.substr(0, bytes.size() - 1)), std::exception);  // cut short
  EXPECT_THROW(decode_step(bytes + "x"), std::exception);                        // trailing bytes
  EXPECT_THROW(decode_step("not a step at all"), std::exception);
}
