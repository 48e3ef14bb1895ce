ds_add_fuzzer(fuzz_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_tokenizer.cpp LIBS ds_tokenizer)
target_compile_definitions(fuzz_tokenizer PRIVATE DS_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
