#include "server/generation_job.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/api_error.h"

namespace ds::server {

GenerationJob::GenerationJob(ServerState& state, std::shared_ptr<Responder> responder, Options options,
                             std::unique_ptr<OutputWriter> writer)
    : st_(state), responder_(std::move(responder)), opt_(std::move(options)), writer_(std::move(writer)) {}

void GenerationJob::start(std::vector<runtime::GenerateRequest> requests) {
  choices_.resize(requests.size());
  last_token_s_.assign(requests.size(), -1);
  std::vector<std::string> ids;
  for (size_t i = 0; i < requests.size(); ++i) {
    choices_[i].engine_id = requests[i].id;
    ids.push_back(requests[i].id);
  }
  if (!st_.live.add(opt_.rid, ids))
    throw ApiError(400, fmt::format("request id '{}' is already in use", opt_.rid), "rid");

  auto self = shared_from_this();
  responder_->on_disconnect([self] { self->on_client_gone(); });
  size_t submitted = 0;
  try {
    for (size_t i = 0; i < requests.size(); ++i) {
      st_.engine.submit(std::move(requests[i]), [self, i](runtime::RequestOutput&& out) {
        // Engine thread: hand over to the connection's executor and return at once.
        auto shared = std::make_shared<runtime::RequestOutput>(std::move(out));
        self->responder_->post([self, i, shared] { self->on_output(i, *shared); });
      });
      ++submitted;
    }
  } catch (const runtime::RequestRejected& e) {
    failed_ = true;
    for (size_t i = 0; i < submitted; ++i) st_.engine.abort(ids[i]);
    st_.live.remove(opt_.rid);
    throw ApiError(e.http_status(), e.what());
  } catch (...) {
    failed_ = true;
    for (size_t i = 0; i < submitted; ++i) st_.engine.abort(ids[i]);
    st_.live.remove(opt_.rid);
    throw;
  }
  if (gone_) abort_unfinished();  // the client left while we were submitting
  if (opt_.stream) responder_->start_stream(200, "text/event-stream; charset=utf-8");
}

void GenerationJob::on_output(size_t i, const runtime::RequestOutput& out) {
  if (failed_ || done_) return;
  ChoiceState& c = choices_[i];
  if (c.finished()) return;  // nothing follows a final output; be safe anyway
  const double now = clock_.seconds();
  const bool had_token = c.first_token_s >= 0;
  c.add(out, now);
  if (!out.token_ids.empty()) {
    if (!had_token) st_.metrics.ttft.observe(now);
    else st_.metrics.inter_token.observe((now - last_token_s_[i]) / double(out.token_ids.size()));
    last_token_s_[i] = now;
  }
  if (!gone_) {
    std::string sse;
    writer_->on_delta(i, out, c, sse);
    if (opt_.stream && !sse.empty()) responder_->send(std::move(sse));
  }
  if (out.finished) {
    st_.metrics.e2e.observe(now);
    if (++finished_ == choices_.size()) complete();
  }
}

void GenerationJob::on_client_gone() {
  if (gone_ || done_) return;
  gone_ = true;
  abort_unfinished();
}

void GenerationJob::abort_unfinished() {
  for (const auto& c : choices_)
    if (!c.finished()) st_.engine.abort(c.engine_id);
}

void GenerationJob::complete() {
  done_ = true;
  st_.live.remove(opt_.rid);
  log_line();
  if (gone_) return;
  if (opt_.stream) {
    responder_->send(writer_->stream_end(choices_));
    responder_->end_stream();
    return;
  }
  bool all_failed = true;
  for (const auto& c : choices_) all_failed = all_failed && c.finish == runtime::FinishReason::Error;
  if (all_failed) {
    responder_->respond(error_response(500, "generation failed: " + choices_[0].error));
    return;
  }
  HttpResponse r;
  r.body = dump(writer_->body(choices_));
  responder_->respond(std::move(r));
}

void GenerationJob::log_line() const {
  UsageCounts u = count_usage(choices_, opt_.n);
  double ttft = -1;
  // Finish reasons as counts in order of first appearance ("length x4998, stop x2"): a batch of
  // thousands of choices still logs one short line. The first error message is kept.
  std::vector<std::pair<std::string, size_t>> reasons;
  std::string first_error;
  for (const auto& c : choices_) {
    if (c.first_token_s >= 0 && (ttft < 0 || c.first_token_s < ttft)) ttft = c.first_token_s;
    std::string name = finish_name(c.finish);
    auto it = std::find_if(reasons.begin(), reasons.end(), [&](const auto& r) { return r.first == name; });
    if (it == reasons.end()) reasons.emplace_back(std::move(name), 1);
    else ++it->second;
    if (c.finish == runtime::FinishReason::Error && first_error.empty()) first_error = c.error;
  }
  std::string finish;
  for (const auto& [name, count] : reasons) {
    if (!finish.empty()) finish += ", ";
    finish += count == 1 ? name : fmt::format("{} x{}", name, count);
    if (name == finish_name(runtime::FinishReason::Error)) finish += " (" + first_error + ")";
  }
  if (gone_) finish += " (client disconnected)";
  int64_t verify = 0, emitted = 0;
  for (const auto& c : choices_) verify += c.spec_verify_ct, emitted += c.spec_accept_tokens;
  const std::string spec = verify ? fmt::format(", accept length {:.2f} ({} verify steps)", double(emitted) / verify, verify) : "";
  spdlog::info("{}: prompt {} tokens, completion {}, cached {}, ttft {}, {:.3f} s{}, finish {}", opt_.rid, u.prompt,
               u.completion, u.cached, ttft < 0 ? std::string("-") : fmt::format("{:.3f} s", ttft), clock_.seconds(),
               spec, finish);
}

}  // namespace ds::server
