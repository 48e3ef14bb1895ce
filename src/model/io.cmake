# Checkpoint I/O: config.json, safetensors reading (mmap) and streaming writing.
add_library(ds_model_io STATIC
  ${CMAKE_CURRENT_LIST_DIR}/config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/safetensors.cpp
  ${CMAKE_CURRENT_LIST_DIR}/checkpoint.cpp
  ${CMAKE_CURRENT_LIST_DIR}/safetensors_writer.cpp)
target_link_libraries(ds_model_io PUBLIC ds_tensor nlohmann_json::nlohmann_json)
