// Verdicts: how answers and statuses become allowances and (fail-closed) denials.
#include <cctype>
#include <cstdio>
#include <utility>

#include "internal.h"

namespace ess {

namespace {

constexpr std::array<std::string_view, kNumCauses> kCauseNames = {
    "", "deadline", "unavailable", "stream_broken", "request_error", "malformed", "refused",
    "client_error",
};

std::string StripPrefix(const std::string& name, std::string_view prefix) {
  if (name.compare(0, prefix.size(), prefix) == 0) {
    return name.substr(prefix.size());
  }
  return name;
}

std::string Upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::string_view CauseName(Cause cause) {
  const auto index = static_cast<std::size_t>(cause);
  return index < kCauseNames.size() ? kCauseNames[index] : std::string_view("unknown");
}

std::vector<Cause> Causes() {
  std::vector<Cause> causes;
  for (std::size_t i = 1; i < kNumCauses; ++i) {
    causes.push_back(static_cast<Cause>(i));
  }
  return causes;
}

std::string Verdict::reason_name() const {
  if (failed_closed()) {
    return std::string(kReasonClientFailClosed);
  }
  if (!v1::DecisionReason_IsValid(reason)) {
    return "DECISION_REASON_" + std::to_string(static_cast<int>(reason));
  }
  return StripPrefix(v1::DecisionReason_Name(reason), "DECISION_REASON_");
}

std::string ScopeString(const v1::Scope& scope) {
  if (scope.kind() == v1::SCOPE_KIND_GLOBAL) {
    return "GLOBAL";
  }
  std::string kind = v1::ScopeKind_IsValid(scope.kind())
                         ? StripPrefix(v1::ScopeKind_Name(scope.kind()), "SCOPE_KIND_")
                         : std::to_string(static_cast<int>(scope.kind()));
  return kind + ":" + scope.id();
}

std::optional<v1::Scope> ParseScope(std::string_view text) {
  v1::Scope scope;
  if (Upper(text) == "GLOBAL") {
    scope.set_kind(v1::SCOPE_KIND_GLOBAL);
    return scope;
  }
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) {
    return std::nullopt;
  }
  const std::string kind = Upper(text.substr(0, colon));
  if (kind == "ACCOUNT") {
    scope.set_kind(v1::SCOPE_KIND_ACCOUNT);
  } else if (kind == "STRATEGY") {
    scope.set_kind(v1::SCOPE_KIND_STRATEGY);
  } else if (kind == "SYMBOL") {
    scope.set_kind(v1::SCOPE_KIND_SYMBOL);
  } else {
    return std::nullopt;
  }
  scope.set_id(std::string(text.substr(colon + 1)));
  return scope;
}

std::optional<Side> ParseSide(std::string_view text) {
  std::string side = Upper(text);
  side = StripPrefix(side, "SIDE_");
  if (side == "BUY") {
    return kBuy;
  }
  if (side == "SELL") {
    return kSell;
  }
  return std::nullopt;
}

namespace internal {

Verdict Failed(Cause cause, std::string message) {
  Verdict verdict;
  verdict.cause = cause;
  verdict.message = std::move(message);
  return verdict;
}

Cause CauseOfCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
      return Cause::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Cause::kDeadline;
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return Cause::kStreamBroken;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Cause::kRequestError;
    default:
      return Cause::kRefused;
  }
}

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "CODE_" + std::to_string(static_cast<int>(code));
  }
}

Verdict FailureOf(const grpc::Status& status) {
  if (status.ok()) {
    return Failed(Cause::kStreamBroken, "the sidecar ended the stream");
  }
  return Failed(CauseOfCode(status.error_code()),
                CodeName(status.error_code()) + ": " + status.error_message());
}

Verdict VerdictFromDecision(const v1::CheckOrderResponse& decision) {
  const v1::DecisionReason reason = decision.reason();
  if (!v1::DecisionReason_IsValid(reason) || reason == v1::DECISION_REASON_UNSPECIFIED) {
    return Failed(Cause::kMalformed,
                  "unknown decision reason " + std::to_string(static_cast<int>(reason)));
  }
  if (decision.allowed() != (reason == v1::DECISION_REASON_ALLOWED)) {
    return Failed(Cause::kMalformed, std::string("allowed=") +
                                         (decision.allowed() ? "true" : "false") +
                                         " contradicts reason " +
                                         v1::DecisionReason_Name(reason));
  }
  Verdict verdict;
  verdict.allowed = decision.allowed();
  verdict.reason = reason;
  verdict.message = decision.message();
  verdict.state_version = decision.state_version();
  verdict.decision_id = decision.decision_id();
  if (decision.has_blocking_scope()) {
    verdict.blocking_scope = ScopeString(decision.blocking_scope());
  }
  return verdict;
}

Verdict VerdictFromAnswer(const v1::CheckOrderStreamResponse& answer) {
  switch (answer.result_case()) {
    case v1::CheckOrderStreamResponse::kDecision:
      return VerdictFromDecision(answer.decision());
    case v1::CheckOrderStreamResponse::kError: {
      std::string message = answer.error().message();
      if (message.empty()) {
        message = "the sidecar rejected the order";
      }
      Verdict verdict = Failed(Cause::kRequestError, std::move(message));
      verdict.field = answer.error().field();
      return verdict;
    }
    default:
      return Failed(Cause::kMalformed, "answer carries neither a decision nor an error");
  }
}

std::string FormatDuration(std::chrono::microseconds d) {
  const long long us = d.count();
  if (us % 1000 == 0) {
    return std::to_string(us / 1000) + "ms";
  }
  if (us < 1000) {
    return std::to_string(us) + "us";
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.3gms", static_cast<double>(us) / 1000.0);
  return text;
}

void FailureBook::Record(const Verdict& verdict) {
  const auto index = static_cast<std::size_t>(verdict.cause);
  if (index == 0 || index >= kNumCauses) {
    return;
  }
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  const auto now = Clock::now();
  std::uint64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (next_log_[index] && now < *next_log_[index]) {
      ++suppressed_[index];
      return;
    }
    next_log_[index] = AddCapped(now, interval_);
    suppressed = std::exchange(suppressed_[index], 0);
  }
  std::string line = "ess: check failed closed (";
  line += CauseName(verdict.cause);
  line += "): " + verdict.message;
  if (!verdict.field.empty()) {
    line += " [field " + verdict.field + "]";
  }
  if (suppressed > 0) {
    line += " [" + std::to_string(suppressed) + " more suppressed]";
  }
  if (sink_) {
    sink_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

std::uint64_t FailureBook::Count(Cause cause) const {
  const auto index = static_cast<std::size_t>(cause);
  return index < kNumCauses ? counts_[index].load(std::memory_order_relaxed) : 0;
}

}  // namespace internal
}  // namespace ess
