# libFuzzer targets of the chat layer (streaming parsers: any chunking == one-shot parse).
ds_add_fuzzer(fuzz_reasoning_parser SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_reasoning_parser.cpp LIBS ds_chat)
ds_add_fuzzer(fuzz_tool_parsers SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_tool_parsers.cpp LIBS ds_chat)
