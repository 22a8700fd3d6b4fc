// The pieces of ess::Client that are not its API: the check stream, the failure book and
// the rules that turn answers and statuses into verdicts (unit-tested on their own).
#ifndef ESS_SRC_INTERNAL_H_
#define ESS_SRC_INTERNAL_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ess/client.h"

namespace ess::internal {

using Clock = std::chrono::steady_clock;

// The longest a deadline, timeout or interval waits: a longer one (microseconds::max())
// would overflow a time point, which is undefined behaviour.
inline constexpr std::chrono::hours kFarFuture{24 * 365 * 30};

// now + d, with d capped at kFarFuture (converted to d's own unit, so nothing overflows).
template <typename TimePoint, typename Rep, typename Period>
TimePoint AddCapped(TimePoint now, std::chrono::duration<Rep, Period> d) {
  using Duration = std::chrono::duration<Rep, Period>;
  return now + std::min(d, std::chrono::duration_cast<Duration>(kFarFuture));
}

// When an answer is taken to have come, to be judged against its check's deadline:
// Clock::now(), moved on by clock_skew, which tests set to make an answer late.
inline std::atomic<Clock::rep> clock_skew{0};
inline Clock::time_point AnswerTime() {
  return Clock::now() + Clock::duration(clock_skew.load(std::memory_order_relaxed));
}

// Whether an answer that came at `answered` missed its check's deadline `until`: one at or
// past it is a denial, even though it is there.
inline bool Late(Clock::time_point answered, Clock::time_point until) {
  return answered >= until;
}

// A fail-closed verdict.
Verdict Failed(Cause cause, std::string message);
// The cause of a call or stream that ended with code: the connectivity codes are told
// apart; anything else is the sidecar refusing the call.
Cause CauseOfCode(grpc::StatusCode code);
// "UNAVAILABLE", "DEADLINE_EXCEEDED", ...
std::string CodeName(grpc::StatusCode code);
// A failed RPC as a fail-closed verdict ("stream_broken" for an OK end of stream).
Verdict FailureOf(const grpc::Status& status);
// A decision is trusted only if it is complete and self-consistent.
Verdict VerdictFromDecision(const v1::CheckOrderResponse& decision);
// One CheckOrderStream answer (its request_id already matched).
Verdict VerdictFromAnswer(const v1::CheckOrderStreamResponse& answer);
// "5ms", "2.5ms", "800us".
std::string FormatDuration(std::chrono::microseconds d);

// Counts failed checks by cause and logs them, at most once per interval per cause, so
// that a dead sidecar under a high order rate does not flood the log.
class FailureBook {
 public:
  FailureBook(LogSink sink, std::chrono::milliseconds interval)
      : sink_(std::move(sink)), interval_(interval) {}
  void Record(const Verdict& verdict);
  std::uint64_t Count(Cause cause) const;

 private:
  LogSink sink_;
  std::chrono::milliseconds interval_;
  std::array<std::atomic<std::uint64_t>, kNumCauses> counts_{};
  std::mutex mu_;
  std::array<std::optional<Clock::time_point>, kNumCauses> next_log_{};
  std::array<std::uint64_t, kNumCauses> suppressed_{};
};

// One check sent on a stream and not answered yet: resolved exactly once, by its answer or
// by the stream's failure. A caller that gave up on its deadline simply never reads it.
class Pending {
 public:
  Pending(std::uint64_t id, Clock::time_point sent) : id_(id), sent_(sent) {}
  std::uint64_t id() const { return id_; }
  Clock::time_point sent() const { return sent_; }
  void Resolve(Verdict verdict);
  // The verdict, if it was resolved by `until`; none if it came later, even if it is there
  // by the time the wait ends (past the deadline, a check fails closed).
  std::optional<Verdict> WaitUntil(Clock::time_point until);

 private:
  const std::uint64_t id_;
  const Clock::time_point sent_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Clock::time_point resolved_;
  Verdict verdict_;
};

// One CheckOrderStream call, with a writer thread and a reader thread (the sync bidi API).
// Once broken it stays broken: the client opens a new one and never sends on, nor
// believes an answer from, a broken stream.
//
// The sidecar answers in request order, so every answer must be for the oldest unanswered
// request; anything else means the stream cannot be trusted and it is broken. Requests
// are queued in send order under mu_ and written by the writer thread: a write may block
// on flow control, a check must never.
class CheckStream {
 public:
  explicit CheckStream(std::chrono::milliseconds stall_after);
  ~CheckStream();  // Shutdown()s
  CheckStream(const CheckStream&) = delete;
  CheckStream& operator=(const CheckStream&) = delete;

  // Opens the call on channel, waiting for it to connect (or for Cancel), and starts the
  // threads. A call that failed to open breaks the stream at once.
  void Open(const std::shared_ptr<grpc::Channel>& channel);
  // Cancels the call, opened or being opened.
  void Cancel() { context_.TryCancel(); }
  // Queues one request; the Pending receives its verdict. On a broken stream or a full
  // queue, returns null and sets *failure.
  std::shared_ptr<Pending> Send(std::uint64_t id, const v1::CheckOrderRequest& order,
                                Verdict* failure);
  // Called by a check whose deadline passed: one late answer is jitter, no answer at all
  // for stall_after is a hung stream, which is broken (and replaced).
  void Expired();
  // Breaks the stream: every check in flight is denied with cause at once.
  void Fail(Cause cause, const std::string& why);
  bool broken() const { return broken_.load(std::memory_order_acquire); }
  // At least one answer came.
  bool answered() const { return answered_.load(std::memory_order_acquire); }
  void WaitBroken();
  // Cancels the call and joins the threads (after which the call is gone).
  void Shutdown();

  // For tests: handles one answer as the reader does; false once broken.
  bool OnAnswer(const v1::CheckOrderStreamResponse& answer);

 private:
  void Write();
  void Read();

  const std::chrono::milliseconds stall_after_;
  grpc::ClientContext context_;
  // Answers are read as bytes and decoded by Read(): see there.
  std::unique_ptr<grpc::ClientReaderWriter<v1::CheckOrderStreamRequest, grpc::ByteBuffer>> rw_;
  std::atomic<bool> broken_{false};
  std::atomic<bool> answered_{false};
  std::thread writer_;
  std::thread reader_;
  std::once_flag shutdown_;

  std::mutex mu_;
  std::condition_variable outbox_cv_;  // a request queued, or broken
  std::condition_variable broken_cv_;
  std::deque<v1::CheckOrderStreamRequest> outbox_;
  std::deque<std::shared_ptr<Pending>> unanswered_;  // in send order
  Cause cause_ = Cause::kNone;
  std::string why_;
};

}  // namespace ess::internal

#endif  // ESS_SRC_INTERNAL_H_
