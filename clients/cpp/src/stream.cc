// The check stream: one CheckOrderStream call, a writer thread, a reader thread.
#include <utility>

#include "internal.h"

namespace ess::internal {

void Pending::Resolve(Verdict verdict) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) {
      return;
    }
    done_ = true;
    resolved_ = AnswerTime();
    verdict_ = std::move(verdict);
  }
  cv_.notify_all();
}

std::optional<Verdict> Pending::WaitUntil(Clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  // wait_until's predicate is true when the answer came as the deadline passed, or while
  // this thread was waking up: only an answer resolved by the deadline is taken.
  if (!cv_.wait_until(lock, until, [this] { return done_; }) || Late(resolved_, until)) {
    return std::nullopt;
  }
  return verdict_;
}

CheckStream::CheckStream(std::chrono::milliseconds stall_after) : stall_after_(stall_after) {
  context_.set_wait_for_ready(true);
}

CheckStream::~CheckStream() { Shutdown(); }

void CheckStream::Open(const std::shared_ptr<grpc::Channel>& channel) {
  // The generated stub's call, made as it makes it, with answers read as bytes. The sync API
  // sends the call's headers here: with wait_for_ready, that waits for the channel to
  // connect (or for Cancel).
  const grpc::internal::RpcMethod method("/ess.v1.GuardService/CheckOrderStream",
                                         grpc::internal::RpcMethod::BIDI_STREAMING, channel);
  rw_.reset(grpc::internal::ClientReaderWriterFactory<
            v1::CheckOrderStreamRequest, grpc::ByteBuffer>::Create(channel.get(), method,
                                                                   &context_));
  writer_ = std::thread([this] { Write(); });
  reader_ = std::thread([this] { Read(); });
}

std::shared_ptr<Pending> CheckStream::Send(std::uint64_t id, const v1::CheckOrderRequest& order,
                                           Verdict* failure) {
  v1::CheckOrderStreamRequest request;
  request.set_request_id(id);
  *request.mutable_order() = order;
  auto pending = std::make_shared<Pending>(id, Clock::now());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.load(std::memory_order_relaxed)) {
      *failure = Failed(cause_, "the stream is broken: " + why_);
      return nullptr;
    }
    if (outbox_.size() >= Client::kMaxQueued) {
      *failure = Failed(Cause::kClientError,
                        "more than " + std::to_string(Client::kMaxQueued) + " checks queued");
      return nullptr;
    }
    outbox_.push_back(std::move(request));
    unanswered_.push_back(pending);
  }
  outbox_cv_.notify_one();
  return pending;
}

void CheckStream::Expired() {
  bool stalled = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stalled = !unanswered_.empty() && Clock::now() - unanswered_.front()->sent() > stall_after_;
  }
  if (stalled) {
    Fail(Cause::kDeadline, "no answer for " + FormatDuration(stall_after_) + "; stream replaced");
  }
}

void CheckStream::Fail(Cause cause, const std::string& why) {
  std::deque<std::shared_ptr<Pending>> unanswered;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.load(std::memory_order_relaxed)) {
      return;
    }
    cause_ = cause;
    why_ = why;
    broken_.store(true, std::memory_order_release);
    unanswered.swap(unanswered_);
    outbox_.clear();
  }
  outbox_cv_.notify_all();
  broken_cv_.notify_all();
  context_.TryCancel();  // ends the call: the reader and the writer return
  for (auto& pending : unanswered) {
    pending->Resolve(Failed(cause, why));
  }
}

void CheckStream::WaitBroken() {
  std::unique_lock<std::mutex> lock(mu_);
  broken_cv_.wait(lock, [this] { return broken_.load(std::memory_order_relaxed); });
}

void CheckStream::Shutdown() {
  std::call_once(shutdown_, [this] {
    Fail(Cause::kClientError, "the stream was shut down");
    if (writer_.joinable()) {
      writer_.join();
    }
    if (reader_.joinable()) {
      reader_.join();
    }
  });
}

void CheckStream::Write() {
  std::deque<v1::CheckOrderStreamRequest> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      outbox_cv_.wait(lock, [this] { return broken() || !outbox_.empty(); });
      if (broken()) {
        return;
      }
      batch.swap(outbox_);
    }
    while (!batch.empty()) {
      grpc::WriteOptions options;
      if (batch.size() > 1) {
        options.set_buffer_hint();  // more follow at once: let them share a frame
      }
      if (!rw_->Write(batch.front(), options)) {
        // The call is over: the reader gets its status and breaks the stream.
        return;
      }
      batch.pop_front();
    }
  }
}

void CheckStream::Read() {
  // An answer gRPC cannot decode itself ends Read() but not the call, so Finish() would wait
  // on a stream that goes on: decoded here, it breaks the stream (and ends the call).
  grpc::ByteBuffer message;
  v1::CheckOrderStreamResponse answer;
  while (rw_->Read(&message)) {
    if (!grpc::SerializationTraits<v1::CheckOrderStreamResponse>::Deserialize(&message, &answer)
             .ok()) {
      Fail(Cause::kMalformed, "an answer that cannot be decoded; stream replaced");
    } else if (!OnAnswer(answer)) {
      context_.TryCancel();  // broken: drain until the call ends
    }
  }
  const grpc::Status status = rw_->Finish();
  const Verdict failure = FailureOf(status);
  Fail(failure.cause, failure.message);
}

bool CheckStream::OnAnswer(const v1::CheckOrderStreamResponse& answer) {
  std::shared_ptr<Pending> expected;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.load(std::memory_order_relaxed)) {
      return false;
    }
    if (!unanswered_.empty()) {
      expected = std::move(unanswered_.front());
      unanswered_.pop_front();
    }
  }
  if (expected == nullptr) {
    Fail(Cause::kMalformed, "answer to request " + std::to_string(answer.request_id()) +
                                ", which was never sent; stream replaced");
    return false;
  }
  if (answer.request_id() != expected->id()) {
    const std::string why = "answer to request " + std::to_string(answer.request_id()) +
                            ", expected " + std::to_string(expected->id()) +
                            "; stream replaced";
    expected->Resolve(Failed(Cause::kMalformed, why));
    Fail(Cause::kMalformed, why);
    return false;
  }
  answered_.store(true, std::memory_order_release);
  expected->Resolve(VerdictFromAnswer(answer));
  return true;
}

}  // namespace ess::internal
