// One HTTP generation request in flight: its choices are engine requests whose outputs come back
// on the engine thread, are posted to the connection's executor, and go out through the
// endpoint's OutputWriter (SSE events, or one body at the end). A client that goes away aborts
// every unfinished choice at once. On completion: one log line, latency metrics.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "server/http_types.h"
#include "server/output_writer.h"
#include "server/server_state.h"
#include "util/timer.h"

namespace ds::server {

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  struct Options {
    std::string rid;  // the response id; registered in ServerState::live while running
    bool stream = false;
    int32_t n = 1;  // choices per prompt (for usage and the log)
  };
  GenerationJob(ServerState& state, std::shared_ptr<Responder> responder, Options options,
                std::unique_ptr<OutputWriter> writer);

  // Submits the requests (their ids must be unique: the engine's request ids) and starts the
  // response. Throws ApiError, with nothing sent, when the rid is live already or the engine refuses
  // (400 / 503); already submitted choices are then aborted. Call on the connection's executor.
  void start(std::vector<runtime::GenerateRequest> requests);

 private:
  void on_output(size_t i, const runtime::RequestOutput& out);
  void on_client_gone();
  void abort_unfinished();
  void complete();
  void log_line() const;

  ServerState& st_;
  std::shared_ptr<Responder> responder_;
  Options opt_;
  std::unique_ptr<OutputWriter> writer_;
  std::vector<ChoiceState> choices_;
  std::vector<double> last_token_s_;
  size_t finished_ = 0;
  bool failed_ = false;  // start() threw: ignore the aborted choices' outputs
  bool gone_ = false;    // the client disconnected
  bool done_ = false;
  Timer clock_;
};

}  // namespace ds::server
