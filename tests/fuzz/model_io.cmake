ds_add_fuzzer(fuzz_safetensors_header SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_safetensors_header.cpp LIBS ds_model_io)
