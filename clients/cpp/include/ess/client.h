// ess::Client: a thin, fail-closed C++ client of the ESS sidecar (ess.v1.GuardService,
// proto/ess/v1/guard.proto): ask before every order "may I send this?".
//
// Client::Check asks over ONE long-lived CheckOrderStream (many checks in flight from many
// threads, answers matched by request_id) and never throws: anything short of a clear,
// self-consistent answer from the sidecar within the check's deadline is a denial whose
// `cause` says why (Verdict::reason_name() is then "CLIENT_FAIL_CLOSED"). A broken stream
// is replaced in the background; no answer is ever taken from a stream that broke.
//
// The other RPCs (fills, order updates, positions, heartbeats, metrics, triggers) are thin
// wrappers that return the gRPC status with the response (ess::Result<T>).
#ifndef ESS_CLIENT_H_
#define ESS_CLIENT_H_

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "ess/v1/guard.grpc.pb.h"
#include "ess/v1/guard.pb.h"

namespace ess {

// The library's version.
inline constexpr std::string_view kVersion = "0.1.0";

// The reason a Verdict gives when the client could not get a trustworthy decision from the
// sidecar and denied the order itself.
inline constexpr std::string_view kReasonClientFailClosed = "CLIENT_FAIL_CLOSED";

// Sides of an order (the generated enum).
using Side = v1::Side;
inline constexpr Side kBuy = v1::SIDE_BUY;
inline constexpr Side kSell = v1::SIDE_SELL;

// Why a check failed closed. kNone marks a decision of the sidecar (allowed or denied).
enum class Cause : std::uint8_t {
  kNone = 0,
  kDeadline,      // no answer within the check's deadline
  kUnavailable,   // the sidecar cannot be reached, or answers UNAVAILABLE
  kStreamBroken,  // the stream ended, or failed with CANCELLED, INTERNAL or UNKNOWN
  kRequestError,  // the sidecar rejected the order as bad input (Verdict::field)
  kMalformed,     // an answer this client cannot trust (see the README)
  kRefused,       // any other status: UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, ...
  kClientError,   // the client is closed, more than kMaxQueued checks queued, or a bug
};
inline constexpr std::size_t kNumCauses = 8;

// "deadline", "unavailable", "stream_broken", "request_error", "malformed", "refused",
// "client_error"; "" for kNone.
std::string_view CauseName(Cause cause);
// Every failure cause, in a fixed order (for metrics).
std::vector<Cause> Causes();

// What Check asks about.
struct Order {
  std::string account;
  std::string strategy;
  std::string symbol;
  Side side = v1::SIDE_UNSPECIFIED;  // kBuy or kSell
  double quantity = 0;               // > 0
  double price = 0;                  // > 0; for a market order, the price expected
  // Informational: a REDUCE_ONLY scope admits the order only if it does not grow the
  // absolute position.
  bool reduce_only = false;
  // Unique per account; made up by the client when empty (Verdict::client_order_id).
  std::string client_order_id;
  // A cancel/replace of that working order (its quantity is the new order's leaves).
  std::string replaces_client_order_id;
};

// The answer to "may I send this order?". `allowed` is the only field to obey.
struct Verdict {
  bool allowed = false;
  // The sidecar's reason; DECISION_REASON_UNSPECIFIED when the check failed closed.
  v1::DecisionReason reason = v1::DECISION_REASON_UNSPECIFIED;
  // The sidecar's message, or why the check failed closed.
  std::string message;
  // kNone for a decision of the sidecar; otherwise why the client denied the order.
  Cause cause = Cause::kNone;
  // With kRequestError: the offending field, e.g. "order.quantity".
  std::string field;
  std::uint64_t state_version = 0;
  std::string decision_id;
  // "GLOBAL" or "KIND:id" of the scope whose state denied the order, if any.
  std::string blocking_scope;
  // The order's client_order_id (made up by the client when none was given): send the
  // order with it, and report its fills and updates with it.
  std::string client_order_id;

  // The client denied the order itself for lack of a trustworthy decision.
  bool failed_closed() const { return cause != Cause::kNone; }
  // The reason without DECISION_REASON_, e.g. "SCOPE_TRIPPED", or "CLIENT_FAIL_CLOSED".
  std::string reason_name() const;
};

// A response and the call's status; the response is meaningful only when ok().
template <typename T>
struct Result {
  grpc::Status status;
  T response;
  bool ok() const { return status.ok(); }
  explicit operator bool() const { return status.ok(); }
};

// One incremental fill of an order the sidecar allowed.
struct Fill {
  std::string account;
  std::string strategy;
  std::string symbol;
  Side side = v1::SIDE_UNSPECIFIED;
  double quantity = 0;
  double price = 0;
  std::string client_order_id;  // required: the order the fill is of
  std::string fill_id;          // required: the venue's execution id
};

// A working order ended (CANCELLED, REJECTED, EXPIRED) or is OPEN with remaining_quantity
// left (the venue's leaves; required with OPEN, sent with OPEN only, and only when set: an
// OPEN update without it is refused by the sidecar, INVALID_ARGUMENT, never taken as 0
// leaves; a 0 that is set is sent: an order filled in full whose fills are not reported
// yet). filled_quantity is the venue's cumulative filled quantity (FIX CumQty), if known
// (sent only when set; unset is not 0): the fills it counts beyond those reported stay
// reserved until they arrive; without it an OPEN update releases nothing. Set it when fills
// come by a separate drop copy.
struct OrderUpdate {
  std::string account;
  std::string client_order_id;
  v1::OrderStatus status = v1::ORDER_STATUS_UNSPECIFIED;
  std::optional<double> remaining_quantity = std::nullopt;
  std::optional<double> filled_quantity = std::nullopt;
};

// A full picture of one account for SyncPositions.
struct Snapshot {
  std::string account;
  double equity = 0;  // > 0, used by the exposure limits
  std::vector<v1::Position> positions;
  // The account's open orders. When any are listed, or open_orders_complete is set, they
  // are all of its working orders; otherwise working orders are left as they are.
  std::vector<v1::OpenOrder> open_orders;
  bool open_orders_complete = false;
  // Per order, the cumulative fills (the venue's CumQty) the positions already count:
  // fills reported after the snapshot move no position until they pass it. Name every
  // order open or filled since the positions were read (0 if none of its fills are in
  // them), or fills count twice or go missing.
  std::vector<v1::IncludedFills> included_fills;
};

// TLS to the sidecar. With cert_file and key_file, mutual TLS.
struct TlsOptions {
  bool enabled = false;
  std::string ca_file;      // PEM bundle that signed the sidecar's certificate; "" = system roots
  std::string cert_file;    // client certificate chain (PEM), for mutual TLS
  std::string key_file;     // its private key (PEM)
  std::string server_name;  // the name to verify instead of the target's host
};

// Receives one log line (no trailing newline). Called from the thread that failed.
using LogSink = std::function<void(std::string_view line)>;

struct Options {
  // The default per-check deadline: a missed deadline is a denial.
  std::chrono::microseconds deadline{5000};
  // Bounds the RPCs other than checks when the call gives none; <= 0 makes Client throw.
  std::chrono::milliseconds rpc_timeout{1000};
  // A stream with a request unanswered for this long is taken for hung and replaced; <= 0
  // makes Client throw (every late answer would break the stream).
  std::chrono::milliseconds stall_after{1000};
  // At most one log line per failure cause per interval; the next says how many were
  // suppressed.
  std::chrono::milliseconds log_interval{1000};
  // Where failures are logged; empty: stderr. `[](std::string_view) {}` for none.
  LogSink log_sink;
  // Sends "authorization: Bearer <token>" with every call (the raw stub's included). Space,
  // tab, CR and LF around it are dropped (a CRLF file's "tok\r" is "tok", as for the
  // sidecar and every client); a byte outside printable ASCII (0x20-0x7E) left inside makes
  // Client throw InvalidToken: gRPC would abort the process on the first call. Empty once
  // stripped: no token.
  std::string token;
  TlsOptions tls;
  // Overrides the transport credentials (and tls) when set.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // The channel's reconnect backoff, first and longest delay (0 < base <= max, or Client
  // throws); a restarted sidecar is found again within about reconnect_max.
  std::chrono::milliseconds reconnect_base{50};
  std::chrono::milliseconds reconnect_max{1000};
  // More channel arguments (keepalive, window sizes, ...), applied last.
  std::function<void(grpc::ChannelArguments&)> channel_arguments;
};

class Client;

// A dead-man's switch: `scope` trips if the sidecar hears no heartbeat from executor_id for
// ttl.
struct HeartbeatConfig {
  std::string executor_id;
  v1::Scope scope;
  std::chrono::milliseconds ttl{0};  // 1 ms to 1 hour
  // How often to beat; default (0) ttl/3, so that one lost beat does not trip the scope.
  // Negative, or not shorter than ttl (the scope would trip), is refused: INVALID_ARGUMENT.
  std::chrono::milliseconds interval{0};
  // Called (from the heartbeat thread) with each failed beat; default: logged.
  std::function<void(const grpc::Status&)> on_error;
  // Whether the executor's trading loop is alive, asked before each beat (from the
  // heartbeat thread); empty: the beats prove only that the process is alive. false, or an
  // exception, withholds the beat (skipped() counts it; the first withheld and the first
  // sent again are logged), so the scope trips at its ttl as if the executor had died;
  // beats resume when it says true again (a trip stays latched: an operator resets it). One
  // that blocks holds the beats, and the scope trips: keep it to reading an atomic.
  std::function<bool()> alive;
};

// Beats in a background thread until Stop, which deregisters, or destruction, which only
// stops beating: the registration stays and the scope trips when the TTL lapses, as for an
// executor that died (a Heartbeater destroyed by an exception unwinding the stack must not
// look like a clean shutdown). Call Stop to shut down cleanly. The client's Close stops it
// as destruction does, without deregistering (review 54e).
class Heartbeater {
 public:
  // Stops beating without deregistering (see above); after Stop, nothing.
  ~Heartbeater();
  Heartbeater(const Heartbeater&) = delete;
  Heartbeater& operator=(const Heartbeater&) = delete;

  // Ends the heartbeats and deregisters the executor, so that the scope does not trip when
  // the TTL lapses. Returns the deregistration's status (only the first Stop sends it).
  // After the client's Close it only stops: it sends nothing and returns OK (the scope
  // trips at the ttl). Called from its own `alive` or `on_error` while another thread's
  // Stop is ending it, it returns OK at once: that Stop's status is the deregistration's.
  grpc::Status Stop();
  // The scope's state in the last successful heartbeat's answer.
  v1::State state() const;
  // The last heartbeat's status.
  grpc::Status last_status() const;
  // The beats withheld because `alive` was not true.
  std::uint64_t skipped() const;

 private:
  friend class Client;
  Heartbeater(Client& client, HeartbeatConfig config, std::chrono::microseconds interval);
  grpc::Status Beat(bool deregister, std::chrono::microseconds timeout);
  bool Alive();
  bool Withhold(bool alive);
  void Run();
  void Halt();  // the client's Close: stop beating, never deregister
  bool Stopping() const;
  bool EndThread();
  bool Tell();
  void Join();
  void Finish(grpc::Status status);
  void Leave();

  Client& client_;
  HeartbeatConfig config_;
  std::uint32_t ttl_ms_;
  std::chrono::microseconds interval_;  // a 1 ms ttl beats every 333 us
  mutable std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool stopped_ = false;
  grpc::ClientContext* beating_ = nullptr;  // the beat in flight, which Halt cancels
  std::thread::id runner_;                  // the heartbeat's thread, once it runs
  grpc::Status stop_status_;
  v1::State state_ = v1::STATE_UNSPECIFIED;
  grpc::Status last_status_;
  std::uint64_t skipped_ = 0;
  bool withheld_ = false;  // the last beat was withheld for `alive`
  std::mutex join_mu_;  // one Join at a time joins the thread
  std::thread thread_;
};

namespace internal {
class CheckStream;
class FailureBook;
}  // namespace internal

// Thrown by Client for a token with a byte outside printable ASCII (0x20-0x7E) once
// stripped of the ASCII space around it; its message says where, never the token.
class InvalidToken : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A client of one sidecar, safe for concurrent use from any number of threads.
// The sidecar's bound on a reason, in characters (code points).
inline constexpr std::size_t kMaxReasonChars = 1024;

// reason as valid UTF-8 (U+FFFD for each byte that starts no valid sequence), cut to at
// most kMaxReasonChars code points with a note of how long it was: what Trigger sends.
std::string BoundedReason(std::string_view reason);

class Client {
 public:
  // Checks queued on a stream beyond this fail closed (kClientError).
  static constexpr std::size_t kMaxQueued = 4096;

  // A client of the sidecar at target: "unix:/abs/path/ess.sock" (fastest) or
  // "host:port". It does not wait for the sidecar (see Connect); it starts connecting, and
  // keeps a check stream open, in the background. Throws std::invalid_argument for bad
  // options (deadline, rpc_timeout or stall_after <= 0, a reconnect backoff not
  // 0 < base <= max, unreadable TLS files; InvalidToken for a token outside 0x20-0x7E).
  explicit Client(const std::string& target, Options options = {});
  // Close()s.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Waits until a check stream is open, so that the first check does not pay for
  // connecting. False if that did not happen within timeout; the client keeps trying in
  // the background either way.
  bool Connect(std::chrono::milliseconds timeout);

  // May this order be sent? Over the client's stream, within deadline (the client's
  // when none is given, or when it is not > 0). Obey Verdict::allowed and send the order with Verdict::client_order_id.
  // Never throws: a missed deadline, an unreachable sidecar, a broken stream, a rejected
  // order or an answer that cannot be trusted is a denial with `cause` set, counted and
  // logged.
  Verdict Check(const Order& order, std::optional<std::chrono::microseconds> deadline = {});

  // Check over the unary CheckOrder RPC, with the same fail-closed rules: simpler,
  // slower, and it may pay for connecting within its deadline.
  Verdict CheckUnary(const Order& order,
                     std::optional<std::chrono::microseconds> deadline = {});

  // An id no other order of this client has, nor (a random per-client prefix) any other
  // client's: "<12 random hex>-<n>".
  std::string NewClientOrderId();

  // Applies one fill (once per fill_id: `duplicate` otherwise) and returns the signed
  // position after it; `unchecked` if the sidecar never allowed that order (the account
  // is then tripped).
  Result<v1::ReportFillResponse> ReportFill(const Fill& fill);
  // Releases (or, OPEN, shrinks) a working order's reservation; `known` is false if no
  // such order was working.
  Result<v1::ReportOrderUpdateResponse> ReportOrderUpdate(const OrderUpdate& update);
  // Replaces the account's book (and, with open orders, its working orders).
  Result<v1::SyncPositionsResponse> SyncPositions(const Snapshot& snapshot);
  // One heartbeat (deregister: the executor is shutting down cleanly); FAILED_PRECONDITION,
  // nothing sent, once the client is closed.
  Result<v1::HeartbeatResponse> Heartbeat(const std::string& executor_id,
                                          const v1::Scope& scope, std::uint32_t ttl_ms,
                                          bool deregister = false);
  // Sends a first heartbeat and, if it succeeded, keeps beating in a background thread
  // until the Heartbeater is stopped (then it deregisters) or destroyed (then it does not).
  // On failure (or a bad ttl) returns nullptr and sets *status; an `alive` not true at the
  // start is FAILED_PRECONDITION, and nothing is sent (nothing would register the
  // executor); so is a closed client. The Heartbeater must not outlive the client.
  std::unique_ptr<Heartbeater> StartHeartbeat(HeartbeatConfig config,
                                              grpc::Status* status = nullptr);
  // One metric sample for scope; the answer says whether it tripped it.
  Result<v1::ReportMetricResponse> ReportMetric(const v1::Scope& scope, v1::Metric metric,
                                                double value);
  // The kill switch for a scope; durable on the sidecar before it returns. Never refused
  // for what comes with the stop: a reason that is not valid UTF-8 is sent with U+FFFD, one
  // over the sidecar's kMaxReasonChars cut (a copy: request is not changed); any mode,
  // reason code or directive number is sent, the sidecar noting one it does not know.
  Result<v1::TriggerResponse> Trigger(const v1::TriggerRequest& request);
  // Every scope that is not ARMED, the thresholds and the state version.
  Result<v1::GetStateResponse> GetState(const v1::GetStateRequest& request = {});

  // The generated stub on the client's channel (the token is added to every call), for
  // the RPCs this class does not wrap.
  v1::GuardService::Stub& Raw() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // Failed checks by cause since construction (causes with none are left out).
  std::map<Cause, std::uint64_t> Failures() const;
  std::uint64_t Failures(Cause cause) const;
  // Check streams opened; more than one means a stream was replaced.
  std::uint64_t StreamsOpened() const { return streams_opened_.load(); }

  // Denies the checks in flight, ends the stream and stops the background thread; later
  // checks are denied (kClientError). Stops its heartbeats without deregistering (their
  // scopes trip at the ttl, as for an executor that died): tells them to end and cancels a
  // beat in flight, without waiting for them (it may be called from a heartbeat's `alive`
  // or `on_error`; a Heartbeater's Stop or destructor waits for its thread); later
  // heartbeats are refused. Idempotent.
  void Close();

 private:
  friend class Heartbeater;
  std::chrono::microseconds DeadlineOf(std::optional<std::chrono::microseconds> d) const;
  Verdict CheckOnStream(const v1::CheckOrderRequest& request, std::chrono::microseconds d);
  void Settle(Verdict& verdict, const std::string& client_order_id);
  void Maintain();
  std::shared_ptr<internal::CheckStream> Open();
  void Install(const std::shared_ptr<internal::CheckStream>& stream);
  void Uninstall(const std::shared_ptr<internal::CheckStream>& stream);
  std::shared_ptr<internal::CheckStream> Current();
  void Log(std::string_view line) const;
  void Bound(grpc::ClientContext& context) const;

  Options options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::GuardService::Stub> stub_;
  std::unique_ptr<internal::FailureBook> failures_;
  std::string order_prefix_;
  std::atomic<std::uint64_t> order_ids_{0};
  std::atomic<std::uint64_t> request_ids_{0};
  std::atomic<std::uint64_t> streams_opened_{0};
  std::atomic<bool> closed_{false};

  std::mutex mu_;
  std::condition_variable changed_;  // a stream was installed, or closing
  std::shared_ptr<internal::CheckStream> stream_;   // where checks go; null while (re)connecting
  std::shared_ptr<internal::CheckStream> opening_;  // being opened (Close cancels it)
  bool closing_ = false;
  std::mutex heartbeats_mu_;
  std::set<Heartbeater*> heartbeats_;  // running; Close halts them
  std::thread maintainer_;
};

// "GLOBAL" or "KIND:id", the way operators write scopes.
std::string ScopeString(const v1::Scope& scope);
// Reads "GLOBAL" or "KIND:id" (KIND one of ACCOUNT, STRATEGY, SYMBOL, in any case).
std::optional<v1::Scope> ParseScope(std::string_view text);
// Reads "buy" or "sell" (any case, with or without "SIDE_").
std::optional<Side> ParseSide(std::string_view text);

}  // namespace ess

#endif  // ESS_CLIENT_H_
