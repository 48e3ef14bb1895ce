// UTF-8 helpers the tokenizer needs: lossy decoding (U+FFFD for invalid sequences, the way Rust's
// String::from_utf8_lossy and Python's errors="replace" do it) and a few code point tests.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ds::tok::utf8 {

// Length of the valid UTF-8 sequence starting at s[0], or 0 when it is invalid or cut short.
size_t valid_seq_len(std::string_view s);

// Appends `bytes` to `out` with every maximal invalid subpart replaced by one U+FFFD.
// With `final_chunk` false, a trailing sequence that is a valid but incomplete prefix is not
// consumed; the return value is the number of bytes consumed (the rest must be kept by the caller).
size_t append_lossy(std::string& out, std::string_view bytes, bool final_chunk = true);

bool is_valid(std::string_view s);

// Decodes the code point at s[pos]; returns its length in bytes, or 0 if invalid (cp unset).
size_t decode_at(std::string_view s, size_t pos, char32_t& cp);
// Start of the code point that ends just before `end` (end > 0); returns end - 1 if invalid.
size_t prev_start(std::string_view s, size_t end);

void append_cp(std::string& out, char32_t cp);

// Rust's char::is_whitespace (Unicode White_Space), which HF uses for lstrip/rstrip.
bool is_white_space(char32_t cp);

}  // namespace ds::tok::utf8
