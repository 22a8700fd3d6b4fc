// ess::Client: the channel, the stream it keeps open, checks, and the other RPCs.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <grpcpp/support/client_interceptor.h>

#include "internal.h"

namespace ess {

using internal::AddCapped;
using internal::CheckStream;
using internal::Clock;
using internal::Failed;
using internal::FormatDuration;

namespace {

// Adds "authorization: Bearer <token>" to every call on the channel, so that the raw stub
// carries it too (call credentials would need a secure channel; a Unix socket is not).
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", *header_});
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerFactory(std::string token) : header_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel, which owns the factory
};

std::string ReadFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    throw std::invalid_argument(std::string("ess: cannot read the TLS ") + what + " " + path);
  }
  return text.str();
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(const Options& options,
                                                      grpc::ChannelArguments& args) {
  if (options.credentials) {
    return options.credentials;
  }
  const TlsOptions& tls = options.tls;
  if (!tls.enabled) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    ssl.pem_root_certs = ReadFile(tls.ca_file, "CA");
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    throw std::invalid_argument(
        "ess: a TLS client certificate needs both its cert and key files");
  }
  if (!tls.cert_file.empty()) {
    ssl.pem_cert_chain = ReadFile(tls.cert_file, "client certificate");
    ssl.pem_private_key = ReadFile(tls.key_file, "client key");
  }
  if (!tls.server_name.empty()) {
    args.SetSslTargetNameOverride(tls.server_name);
  }
  return grpc::SslCredentials(ssl);
}

std::string RandomPrefix() {
  std::random_device random;
  std::string prefix;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 6; ++i) {
    const unsigned byte = random() & 0xffu;
    prefix += kHex[byte >> 4];
    prefix += kHex[byte & 0xfu];
  }
  return prefix + "-";
}

v1::CheckOrderRequest RequestOf(const Order& order, const std::string& client_order_id) {
  v1::CheckOrderRequest request;
  request.set_account(order.account);
  request.set_strategy(order.strategy);
  request.set_symbol(order.symbol);
  request.set_side(order.side);
  request.set_quantity(order.quantity);
  request.set_price(order.price);
  request.set_reduce_only(order.reduce_only);
  request.set_client_order_id(client_order_id);
  request.set_replaces_client_order_id(order.replaces_client_order_id);
  return request;
}

// The denial of a check whose answer did not come within d.
Verdict NoAnswerWithin(std::chrono::microseconds d) {
  return Failed(Cause::kDeadline, "no answer within " + FormatDuration(d));
}

// The token stripped of space, tab, CR and LF around it (Python's rule, review 54e: a CRLF
// file's "tok\r" is "tok"). gRPC core aborts the process (SIGABRT) on a metadata value with
// a byte outside 0x20-0x7E, at the first call: refuse one left inside here, saying where
// (in the token as given), not what.
std::string CheckToken(const std::string& given) {
  constexpr const char* kSpace = " \t\r\n";
  const std::size_t lead = given.find_first_not_of(kSpace);
  if (lead == std::string::npos) {
    return "";
  }
  const std::size_t end = given.find_last_not_of(kSpace) + 1;
  for (std::size_t i = lead; i < end; ++i) {
    const auto b = static_cast<unsigned char>(given[i]);
    if (b >= 0x20 && b <= 0x7e) {
      continue;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", b);
    throw InvalidToken("ess: the token's byte " + std::to_string(i) +
                       (b < 0x80 ? std::string(" is the control character ") + hex
                                 : std::string(" is not ASCII")) +
                       "; only 0x20-0x7E may be sent");
  }
  return given.substr(lead, end - lead);
}

template <typename T>
Result<T> Done(grpc::Status status, T response) {
  return Result<T>{std::move(status), std::move(response)};
}

}  // namespace

Client::Client(const std::string& target, Options options) : options_(std::move(options)) {
  if (options_.deadline.count() <= 0) {
    throw std::invalid_argument("ess: the check deadline must be > 0");
  }
  // Else every RPC but the checks (Trigger, heartbeats, fills) would fail unsent.
  if (options_.rpc_timeout.count() <= 0) {
    throw std::invalid_argument("ess: the RPC timeout (rpc_timeout) must be > 0");
  }
  if (options_.reconnect_base.count() <= 0 || options_.reconnect_max < options_.reconnect_base) {
    throw std::invalid_argument("ess: the reconnect backoff must be 0 < base <= max");
  }
  // Else every late answer would break the stream and deny every check in flight.
  if (options_.stall_after.count() <= 0) {
    throw std::invalid_argument("ess: stall_after must be > 0");
  }
  options_.token = CheckToken(options_.token);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.reconnect_base.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.reconnect_max.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options_.reconnect_max.count()));
  // A stream is what was sent on it: never replayed by gRPC on another connection (a
  // broken stream is replaced by the client, its checks denied).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  auto credentials = Credentials(options_, args);
  if (options_.channel_arguments) {
    options_.channel_arguments(args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options_.token.empty()) {
    interceptors.push_back(std::make_unique<BearerFactory>(options_.token));
  }
  channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(
      target, credentials, args, std::move(interceptors));
  stub_ = v1::GuardService::NewStub(channel_);
  failures_ = std::make_unique<internal::FailureBook>(options_.log_sink, options_.log_interval);
  order_prefix_ = RandomPrefix();
  maintainer_ = std::thread([this] { Maintain(); });
}

Client::~Client() { Close(); }

void Client::Close() {
  std::shared_ptr<CheckStream> stream;
  std::shared_ptr<CheckStream> opening;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) {
      return;
    }
    closing_ = true;
    closed_.store(true);
    stream = stream_;
    opening = opening_;
  }
  {
    // Review 54e: they beat on through a closed client, so its scopes never tripped.
    std::lock_guard<std::mutex> lock(heartbeats_mu_);
    for (Heartbeater* heartbeater : heartbeats_) {
      heartbeater->Halt();
    }
    heartbeats_.clear();
  }
  changed_.notify_all();
  if (stream) {
    stream->Fail(Cause::kClientError, "the client was closed");
  }
  if (opening) {
    opening->Cancel();
  }
  if (maintainer_.joinable()) {
    maintainer_.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  stream_.reset();
}

bool Client::Connect(std::chrono::milliseconds timeout) {
  const auto until = AddCapped(Clock::now(), timeout);
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_until(lock, until, [this] {
    return closing_ || (stream_ != nullptr && !stream_->broken());
  }) && !closing_;
}

std::string Client::NewClientOrderId() {
  return order_prefix_ + std::to_string(order_ids_.fetch_add(1) + 1);
}

std::chrono::microseconds Client::DeadlineOf(std::optional<std::chrono::microseconds> d) const {
  return d && d->count() > 0 ? *d : options_.deadline;
}

Verdict Client::Check(const Order& order, std::optional<std::chrono::microseconds> deadline) {
  std::string client_order_id;
  Verdict verdict;
  try {
    client_order_id = order.client_order_id.empty() ? NewClientOrderId() : order.client_order_id;
    verdict = CheckOnStream(RequestOf(order, client_order_id), DeadlineOf(deadline));
  } catch (const std::exception& e) {
    verdict = Failed(Cause::kClientError, std::string("client bug: ") + e.what());
  } catch (...) {
    verdict = Failed(Cause::kClientError, "client bug");
  }
  Settle(verdict, client_order_id);
  return verdict;
}

Verdict Client::CheckOnStream(const v1::CheckOrderRequest& request, std::chrono::microseconds d) {
  const auto until = AddCapped(Clock::now(), d);
  std::shared_ptr<CheckStream> stream = Current();
  while (stream == nullptr) {
    if (closed_.load()) {
      return Failed(Cause::kClientError, "the client is closed");
    }
    // A sidecar known to be unreachable denies at once; while the connection is being
    // made, a check waits for the stream within its own deadline.
    if (channel_->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
      return Failed(Cause::kUnavailable, "the sidecar is unreachable; reconnecting");
    }
    std::unique_lock<std::mutex> lock(mu_);
    const bool ready = changed_.wait_until(lock, until, [this] {
      return closing_ || (stream_ != nullptr && !stream_->broken());
    });
    if (!ready) {
      return Failed(Cause::kDeadline, "no stream to the sidecar within " + FormatDuration(d));
    }
    if (!closing_) {
      stream = stream_;
    }
  }
  Verdict failure;
  auto pending = stream->Send(request_ids_.fetch_add(1) + 1, request, &failure);
  if (pending == nullptr) {
    return failure;
  }
  if (auto verdict = pending->WaitUntil(until)) {
    return std::move(*verdict);
  }
  stream->Expired();
  return NoAnswerWithin(d);
}

Verdict Client::CheckUnary(const Order& order, std::optional<std::chrono::microseconds> deadline) {
  std::string client_order_id;
  Verdict verdict;
  try {
    client_order_id = order.client_order_id.empty() ? NewClientOrderId() : order.client_order_id;
    if (closed_.load()) {
      verdict = Failed(Cause::kClientError, "the client is closed");
    } else {
      const auto d = DeadlineOf(deadline);
      const auto until = AddCapped(Clock::now(), d);
      grpc::ClientContext context;
      context.set_deadline(AddCapped(std::chrono::system_clock::now(), d));
      v1::CheckOrderResponse answer;
      const grpc::Status status =
          stub_->CheckOrder(&context, RequestOf(order, client_order_id), &answer);
      if (!status.ok()) {
        verdict = internal::FailureOf(status);
      } else if (internal::Late(internal::AnswerTime(), until)) {
        verdict = NoAnswerWithin(d);  // returned late, as the stream's checks judge theirs
      } else {
        verdict = internal::VerdictFromDecision(answer);
      }
    }
  } catch (const std::exception& e) {
    verdict = Failed(Cause::kClientError, std::string("client bug: ") + e.what());
  } catch (...) {
    verdict = Failed(Cause::kClientError, "client bug");
  }
  Settle(verdict, client_order_id);
  return verdict;
}

void Client::Settle(Verdict& verdict, const std::string& client_order_id) {
  verdict.client_order_id = client_order_id;
  if (verdict.failed_closed()) {
    verdict.allowed = false;
    verdict.reason = v1::DECISION_REASON_UNSPECIFIED;
    try {
      failures_->Record(verdict);
    } catch (...) {
      // Check never throws: a log sink that throws loses its line, not the denial.
    }
  }
}

std::map<Cause, std::uint64_t> Client::Failures() const {
  std::map<Cause, std::uint64_t> out;
  for (Cause cause : Causes()) {
    if (const auto n = failures_->Count(cause); n > 0) {
      out[cause] = n;
    }
  }
  return out;
}

std::uint64_t Client::Failures(Cause cause) const { return failures_->Count(cause); }

std::shared_ptr<CheckStream> Client::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ != nullptr && stream_->broken()) {
    stream_.reset();
  }
  return stream_;
}

void Client::Install(const std::shared_ptr<CheckStream>& stream) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closing_) {
      stream_ = stream;
    }
  }
  if (closed_.load()) {
    stream->Fail(Cause::kClientError, "the client was closed");
  }
  changed_.notify_all();
}

void Client::Uninstall(const std::shared_ptr<CheckStream>& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ == stream) {
    stream_.reset();
  }
}

std::shared_ptr<CheckStream> Client::Open() {
  auto stream = std::make_shared<CheckStream>(options_.stall_after);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) {
      return nullptr;
    }
    opening_ = stream;
  }
  stream->Open(channel_);  // waits for the connection, or for Close to cancel it
  {
    std::lock_guard<std::mutex> lock(mu_);
    opening_.reset();
  }
  streams_opened_.fetch_add(1);
  return stream;
}

// Keeps one check stream open: opens one (waiting for the connection) and, when it breaks,
// replaces it; streams that break without ever answering (a refusal) are reopened with a
// growing backoff.
void Client::Maintain() {
  auto delay = options_.reconnect_base;
  for (;;) {
    if (auto stream = Open()) {
      const auto opened = Clock::now();
      Install(stream);
      stream->WaitBroken();
      Uninstall(stream);
      stream->Shutdown();
      if (stream->answered() || Clock::now() - opened > options_.reconnect_max) {
        delay = options_.reconnect_base;
        if (!closed_.load()) {
          continue;
        }
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (changed_.wait_for(lock, delay, [this] { return closing_; })) {
      return;
    }
    delay = std::min(delay * 2, options_.reconnect_max);
  }
}

void Client::Log(std::string_view line) const {
  if (options_.log_sink) {
    try {
      options_.log_sink(line);
    } catch (...) {
      // Called from the heartbeat thread, where a throw would end the process.
    }
  } else {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  }
}

void Client::Bound(grpc::ClientContext& context) const {
  context.set_deadline(AddCapped(std::chrono::system_clock::now(), options_.rpc_timeout));
}

Result<v1::ReportFillResponse> Client::ReportFill(const Fill& fill) {
  v1::ReportFillRequest request;
  request.set_account(fill.account);
  request.set_strategy(fill.strategy);
  request.set_symbol(fill.symbol);
  request.set_side(fill.side);
  request.set_quantity(fill.quantity);
  request.set_price(fill.price);
  request.set_client_order_id(fill.client_order_id);
  request.set_fill_id(fill.fill_id);
  grpc::ClientContext context;
  Bound(context);
  v1::ReportFillResponse response;
  auto status = stub_->ReportFill(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

Result<v1::ReportOrderUpdateResponse> Client::ReportOrderUpdate(const OrderUpdate& update) {
  v1::ReportOrderUpdateRequest request;
  request.set_account(update.account);
  request.set_client_order_id(update.client_order_id);
  request.set_status(update.status);
  if (update.status == v1::ORDER_STATUS_OPEN && update.remaining_quantity) {
    request.set_remaining_quantity(*update.remaining_quantity);
  }
  if (update.filled_quantity) {
    request.set_filled_quantity(*update.filled_quantity);
  }
  grpc::ClientContext context;
  Bound(context);
  v1::ReportOrderUpdateResponse response;
  auto status = stub_->ReportOrderUpdate(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

Result<v1::SyncPositionsResponse> Client::SyncPositions(const Snapshot& snapshot) {
  v1::SyncPositionsRequest request;
  request.set_account(snapshot.account);
  request.set_equity(snapshot.equity);
  for (const auto& position : snapshot.positions) {
    *request.add_positions() = position;
  }
  for (const auto& open : snapshot.open_orders) {
    *request.add_open_orders() = open;
  }
  request.set_open_orders_complete(snapshot.open_orders_complete);
  for (const auto& included : snapshot.included_fills) {
    *request.add_included_fills() = included;
  }
  grpc::ClientContext context;
  Bound(context);
  v1::SyncPositionsResponse response;
  auto status = stub_->SyncPositions(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

Result<v1::HeartbeatResponse> Client::Heartbeat(const std::string& executor_id,
                                                const v1::Scope& scope, std::uint32_t ttl_ms,
                                                bool deregister) {
  if (closed_.load()) {
    return Done(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                             "ess: the client is closed: no heartbeat is sent"),
                v1::HeartbeatResponse());
  }
  v1::HeartbeatRequest request;
  request.set_executor_id(executor_id);
  *request.mutable_scope() = scope;
  request.set_ttl_ms(ttl_ms);
  request.set_deregister(deregister);
  grpc::ClientContext context;
  Bound(context);
  v1::HeartbeatResponse response;
  auto status = stub_->Heartbeat(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

Result<v1::ReportMetricResponse> Client::ReportMetric(const v1::Scope& scope, v1::Metric metric,
                                                      double value) {
  v1::ReportMetricRequest request;
  *request.mutable_scope() = scope;
  request.set_metric(metric);
  request.set_value(value);
  grpc::ClientContext context;
  Bound(context);
  v1::ReportMetricResponse response;
  auto status = stub_->ReportMetric(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

namespace {

// The length of the valid UTF-8 sequence at text[i], 0 if none starts there (overlong
// forms, surrogates and code points past U+10FFFF are not valid).
std::size_t Utf8SequenceAt(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const auto continuation = [&](std::size_t k) {
    return i + k < text.size() && (byte(k) & 0xC0) == 0x80;
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return continuation(1) ? 2 : 0;
  if (lead >= 0xE0 && lead <= 0xEF) {
    if (!continuation(1) || !continuation(2)) return 0;
    if (lead == 0xE0 && byte(1) < 0xA0) return 0;   // overlong
    if (lead == 0xED && byte(1) >= 0xA0) return 0;  // a surrogate
    return 3;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    if (!continuation(1) || !continuation(2) || !continuation(3)) return 0;
    if (lead == 0xF0 && byte(1) < 0x90) return 0;   // overlong
    if (lead == 0xF4 && byte(1) >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

std::string BoundedReason(std::string_view reason) {
  std::string text;
  std::size_t chars = 0, i = 0;
  // Past kMaxReasonChars code points nothing is looked at.
  while (i < reason.size() && chars < kMaxReasonChars) {
    const std::size_t length = Utf8SequenceAt(reason, i);
    if (length == 0) {
      text += "\xEF\xBF\xBD";  // U+FFFD
      i += 1;
    } else {
      text.append(reason.substr(i, length));
      i += length;
    }
    ++chars;
  }
  if (i == reason.size()) return text;
  const std::string cut = " [\xE2\x80\xA6 cut; " + std::to_string(reason.size()) + " bytes given]";
  const std::size_t keep = kMaxReasonChars - (cut.size() - 2);  // "\xE2\x80\xA6" is one
  std::size_t end = 0;
  for (std::size_t n = 0; n < keep && end < text.size(); ++n) {
    do {
      ++end;
    } while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80);
  }
  text.resize(end);
  return text + cut;
}

Result<v1::TriggerResponse> Client::Trigger(const v1::TriggerRequest& request) {
  grpc::ClientContext context;
  Bound(context);
  v1::TriggerResponse response;
  std::string reason = BoundedReason(request.reason());
  grpc::Status status;
  if (reason == request.reason()) {
    status = stub_->Trigger(&context, request, &response);
  } else {
    v1::TriggerRequest sent = request;  // the caller's request is left as it is
    sent.set_reason(std::move(reason));
    status = stub_->Trigger(&context, sent, &response);
  }
  return Done(std::move(status), std::move(response));
}

Result<v1::GetStateResponse> Client::GetState(const v1::GetStateRequest& request) {
  grpc::ClientContext context;
  Bound(context);
  v1::GetStateResponse response;
  auto status = stub_->GetState(&context, request, &response);
  return Done(std::move(status), std::move(response));
}

// Heartbeats.

std::unique_ptr<Heartbeater> Client::StartHeartbeat(HeartbeatConfig config,
                                                    grpc::Status* status) {
  const grpc::Status closed(grpc::StatusCode::FAILED_PRECONDITION,
                            "ess: the client is closed: no heartbeat can be started");
  if (closed_.load()) {
    if (status != nullptr) {
      *status = closed;
    }
    return nullptr;
  }
  if (config.ttl < std::chrono::milliseconds(1) || config.ttl > std::chrono::hours(1)) {
    if (status != nullptr) {
      *status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                             "ess: heartbeat ttl must be 1 ms to 1 hour");
    }
    return nullptr;
  }
  // An interval not shorter than the ttl would trip the scope of a live executor.
  if (config.interval.count() < 0 || config.interval >= config.ttl) {
    if (status != nullptr) {
      const std::string interval = std::to_string(config.interval.count()) + " ms";
      *status = grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          config.interval.count() < 0
              ? "ess: a heartbeat interval must be > 0 (0: ttl/3), not " + interval
              : "ess: a heartbeat interval of " + interval + " is not shorter than its ttl of " +
                    std::to_string(config.ttl.count()) + " ms: the scope would trip");
    }
    return nullptr;
  }
  const std::chrono::microseconds interval =
      config.interval.count() > 0 ? std::chrono::microseconds(config.interval)
                                  : std::chrono::microseconds(config.ttl) / 3;
  if (!config.on_error) {
    const std::string executor = config.executor_id;
    config.on_error = [this, executor](const grpc::Status& failure) {
      Log("ess: heartbeat of " + executor + " failed: " +
          internal::CodeName(failure.error_code()) + ": " + failure.error_message());
    };
  }
  std::unique_ptr<Heartbeater> heartbeater(
      new Heartbeater(*this, std::move(config), interval));
  if (!heartbeater->Alive()) {
    if (status != nullptr) {
      *status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                             "ess: heartbeat of " + heartbeater->config_.executor_id +
                                 " not started: its alive is not true; nothing sent");
    }
    heartbeater->stopped_ = true;  // nothing to stop, nor to deregister
    return nullptr;
  }
  grpc::Status first = heartbeater->Beat(false, options_.rpc_timeout);
  if (status != nullptr) {
    *status = first;
  }
  if (!first.ok()) {
    heartbeater->stopped_ = true;  // nothing to stop, nor to deregister
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(heartbeats_mu_);
  if (closed_.load()) {  // closed during the first beat: the scope trips at the ttl
    if (status != nullptr) {
      *status = closed;
    }
    heartbeater->stopped_ = true;
    return nullptr;
  }
  heartbeater->thread_ = std::thread([h = heartbeater.get()] { h->Run(); });
  heartbeats_.insert(heartbeater.get());
  return heartbeater;
}

Heartbeater::Heartbeater(Client& client, HeartbeatConfig config,
                         std::chrono::microseconds interval)
    : client_(client),
      config_(std::move(config)),
      ttl_ms_(static_cast<std::uint32_t>(config_.ttl.count())),
      interval_(interval) {}

// Only Stop deregisters: destroyed without it (an exception unwinding the executor, say),
// the Heartbeater just ends its thread, so that the scope trips when the TTL lapses.
Heartbeater::~Heartbeater() {
  Leave();
  EndThread();  // nothing if Stop or Close ran
  Join();       // the thread a Close told to end (review 54g: left joinable, it aborted)
}

// Out of the client's running heartbeats, once a Close halting it is done.
void Heartbeater::Leave() {
  std::lock_guard<std::mutex> lock(client_.heartbeats_mu_);
  client_.heartbeats_.erase(this);
}

// Marks it stopping and joins the thread (a beat in progress ends first); false if it was
// stopping already.
bool Heartbeater::EndThread() {
  if (!Tell()) {
    return false;
  }
  Join();
  return true;
}

// Marks it stopping, without waiting; false if it was stopping already.
bool Heartbeater::Tell() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      return false;
    }
    stopping_ = true;
  }
  stop_cv_.notify_all();
  return true;
}

// Waits for the thread to end, unless this is the thread (Stop or Close from its own
// `alive` or `on_error`, review 54g: it joined itself, std::system_error): it ends once
// the callback returns, and the destructor, on another thread, joins it.
void Heartbeater::Join() {
  bool own;
  {
    std::lock_guard<std::mutex> lock(mu_);
    own = runner_ == std::this_thread::get_id();
  }
  if (own) {
    return;
  }
  // Two Stops after a Close both find it stopping: one joins (review 54i: both joined the
  // one thread, and one of them waited for good).
  std::lock_guard<std::mutex> joining(join_mu_);
  if (thread_.joinable()) {
    thread_.join();
  }
}

// What every Stop returns from now on.
void Heartbeater::Finish(grpc::Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_status_ = std::move(status);
    stopped_ = true;
  }
  stop_cv_.notify_all();
}

grpc::Status Heartbeater::Beat(bool deregister, std::chrono::microseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(AddCapped(std::chrono::system_clock::now(), timeout));
  v1::HeartbeatRequest request;
  request.set_executor_id(config_.executor_id);
  *request.mutable_scope() = config_.scope;
  request.set_ttl_ms(ttl_ms_);
  request.set_deregister(deregister);
  v1::HeartbeatResponse response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !deregister) {  // told to end meanwhile: no beat after that
      return grpc::Status(grpc::StatusCode::CANCELLED, "the heartbeat was stopped");
    }
    beating_ = &context;  // Halt cancels it
  }
  grpc::Status status = client_.stub_->Heartbeat(&context, request, &response);
  std::lock_guard<std::mutex> lock(mu_);
  beating_ = nullptr;
  last_status_ = status;
  if (status.ok()) {
    state_ = response.state();
  }
  return status;
}

void Heartbeater::Run() {
  auto next = AddCapped(Clock::now(), interval_);
  std::unique_lock<std::mutex> lock(mu_);
  runner_ = std::this_thread::get_id();
  while (!stop_cv_.wait_until(lock, next, [this] { return stopping_; })) {
    lock.unlock();
    const bool alive = Alive();
    // While `alive` ran: no beat after Stop's deregistration, nor after Close.
    if (Stopping() || client_.closed_.load()) {
      return;
    }
    if (!Withhold(alive)) {
      // Bounded by the interval too, so that beats never pile up.
      const grpc::Status status = Beat(
          false, std::min<std::chrono::microseconds>(interval_, client_.options_.rpc_timeout));
      if (!status.ok() && !Stopping()) {
        config_.on_error(status);
      }
    }
    next = std::max(AddCapped(next, interval_), Clock::now());
    lock.lock();
  }
}

// config_.alive (true when empty); an exception from it is not alive.
bool Heartbeater::Alive() {
  if (!config_.alive) {
    return true;
  }
  try {
    return config_.alive();
  } catch (const std::exception& e) {
    client_.Log("ess: heartbeat alive of " + config_.executor_id + " threw (not alive): " +
                e.what());
  } catch (...) {
    client_.Log("ess: heartbeat alive of " + config_.executor_id + " threw (not alive)");
  }
  return false;
}

// Counts a beat withheld (not alive) and logs the changes of alive; whether to withhold.
bool Heartbeater::Withhold(bool alive) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool changed = withheld_ == alive;
  withheld_ = !alive;
  skipped_ += alive ? 0 : 1;
  lock.unlock();
  if (changed && !alive) {
    client_.Log("ess: heartbeat of " + config_.executor_id + " withheld: the executor is not"
                " alive; its scope trips at the ttl of " + std::to_string(ttl_ms_) + " ms");
  } else if (changed) {
    client_.Log("ess: heartbeat of " + config_.executor_id + " resumed: the executor is alive"
                " again");
  }
  return !alive;
}

std::uint64_t Heartbeater::skipped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return skipped_;
}

grpc::Status Heartbeater::Stop() {
  Leave();  // waits for a Close halting it
  if (!EndThread()) {  // stopped, or another thread is stopping it: wait for it
    std::unique_lock<std::mutex> lock(mu_);
    if (runner_ == std::this_thread::get_id() && !stopped_) {
      // From its own `alive` or `on_error` while another thread's Stop joins it: that one
      // finishes once this callback returns (review 54h: each waited for the other).
      return grpc::Status::OK;
    }
    stop_cv_.wait(lock, [this] { return stopped_; });
    lock.unlock();
    Join();  // a Close told it to end: it has, when Stop returns
    return stop_status_;
  }
  // The client closed meanwhile: only stopped (the executor is gone with it).
  grpc::Status status =
      client_.closed_.load() ? grpc::Status::OK : Beat(true, client_.options_.rpc_timeout);
  Finish(status);
  return status;
}

// The client's Close (holding heartbeats_mu_): tells the thread to end without waiting
// for it (review 54g: Close from the heartbeat's own callback joined itself, and one while
// `alive` blocked waited as long), and never deregisters; a later Stop returns OK. A beat
// in progress ends with the call, and none is sent after: Run looks again after `alive`.
void Heartbeater::Halt() {
  if (Tell()) {  // else Stop or the destructor has it (and left the set first)
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (beating_ != nullptr) {
        beating_->TryCancel();
      }
    }
    Finish(grpc::Status::OK);
  }
}

bool Heartbeater::Stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

v1::State Heartbeater::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

grpc::Status Heartbeater::last_status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_status_;
}

}  // namespace ess
