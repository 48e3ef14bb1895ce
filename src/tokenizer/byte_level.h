// The GPT-2 byte <-> unicode mapping of HF's ByteLevel pre-tokenizer and decoder: every byte is
// shown as one printable code point, so that BPE vocab strings are valid text ("Ġ" = space).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ds::tok::byte_level {

// Code point that stands for byte b.
char32_t byte_to_cp(uint8_t b);
// UTF-8 of byte_to_cp(b), for all 256 bytes.
const std::array<std::string, 256>& byte_to_utf8();
// Maps a vocab string back to bytes as HF's ByteLevel decoder does: if every code point of the
// token is in the table, its bytes; otherwise the token's own UTF-8 unchanged.
std::string token_to_bytes(std::string_view token);
// The reverse: raw bytes -> vocab string form.
std::string bytes_to_token(std::string_view bytes);

}  // namespace ds::tok::byte_level
