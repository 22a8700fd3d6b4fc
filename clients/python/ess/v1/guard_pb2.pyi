import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScopeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCOPE_KIND_UNSPECIFIED: _ClassVar[ScopeKind]
    SCOPE_KIND_GLOBAL: _ClassVar[ScopeKind]
    SCOPE_KIND_ACCOUNT: _ClassVar[ScopeKind]
    SCOPE_KIND_STRATEGY: _ClassVar[ScopeKind]
    SCOPE_KIND_SYMBOL: _ClassVar[ScopeKind]

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATE_UNSPECIFIED: _ClassVar[State]
    STATE_ARMED: _ClassVar[State]
    STATE_REDUCE_ONLY: _ClassVar[State]
    STATE_TRIPPED: _ClassVar[State]
    STATE_COOLING_DOWN: _ClassVar[State]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class DecisionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_REASON_UNSPECIFIED: _ClassVar[DecisionReason]
    DECISION_REASON_ALLOWED: _ClassVar[DecisionReason]
    DECISION_REASON_SCOPE_TRIPPED: _ClassVar[DecisionReason]
    DECISION_REASON_COOLING_DOWN: _ClassVar[DecisionReason]
    DECISION_REASON_REDUCE_ONLY: _ClassVar[DecisionReason]
    DECISION_REASON_MAX_ORDER_QUANTITY: _ClassVar[DecisionReason]
    DECISION_REASON_MAX_ORDER_NOTIONAL: _ClassVar[DecisionReason]
    DECISION_REASON_PRICE_BAND: _ClassVar[DecisionReason]
    DECISION_REASON_ORDER_RATE: _ClassVar[DecisionReason]
    DECISION_REASON_SYMBOL_EXPOSURE: _ClassVar[DecisionReason]
    DECISION_REASON_STRATEGY_EXPOSURE: _ClassVar[DecisionReason]
    DECISION_REASON_PORTFOLIO_EXPOSURE: _ClassVar[DecisionReason]
    DECISION_REASON_MAX_POSITIONS: _ClassVar[DecisionReason]
    DECISION_REASON_EQUITY_UNKNOWN: _ClassVar[DecisionReason]
    DECISION_REASON_MAX_WORKING_ORDERS: _ClassVar[DecisionReason]
    DECISION_REASON_DUPLICATE_ORDER: _ClassVar[DecisionReason]
    DECISION_REASON_MARK_UNKNOWN: _ClassVar[DecisionReason]
    DECISION_REASON_QUANTITY_UNREPRESENTABLE: _ClassVar[DecisionReason]

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_DAILY_DRAWDOWN_PCT: _ClassVar[Metric]
    METRIC_WEEKLY_DRAWDOWN_PCT: _ClassVar[Metric]
    METRIC_TOTAL_DRAWDOWN_PCT: _ClassVar[Metric]
    METRIC_OPEN_LOSS_PCT: _ClassVar[Metric]
    METRIC_EQUITY: _ClassVar[Metric]
    METRIC_EXECUTION_ERROR: _ClassVar[Metric]
    METRIC_API_ERROR: _ClassVar[Metric]
    METRIC_ORDER_FAILURE: _ClassVar[Metric]
    METRIC_TRADE_RESULT: _ClassVar[Metric]
    METRIC_STOP_LOSS_HIT: _ClassVar[Metric]
    METRIC_DATA_FEED_TICK: _ClassVar[Metric]
    METRIC_DATA_FEED_CORRUPT: _ClassVar[Metric]
    METRIC_SYSTEM_HEALTH: _ClassVar[Metric]

class TriggerReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_REASON_UNSPECIFIED: _ClassVar[TriggerReason]
    TRIGGER_REASON_USER_INITIATED: _ClassVar[TriggerReason]
    TRIGGER_REASON_RISK_VIOLATION: _ClassVar[TriggerReason]
    TRIGGER_REASON_SYSTEM_ERROR: _ClassVar[TriggerReason]
    TRIGGER_REASON_MARKET_CONDITION: _ClassVar[TriggerReason]
    TRIGGER_REASON_CONNECTIVITY_ISSUE: _ClassVar[TriggerReason]
    TRIGGER_REASON_REGULATORY_HALT: _ClassVar[TriggerReason]

class TriggerMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIGGER_MODE_UNSPECIFIED: _ClassVar[TriggerMode]
    TRIGGER_MODE_HALT: _ClassVar[TriggerMode]
    TRIGGER_MODE_REDUCE_ONLY: _ClassVar[TriggerMode]

class Directive(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTIVE_UNSPECIFIED: _ClassVar[Directive]
    DIRECTIVE_CANCEL_OPEN_ORDERS: _ClassVar[Directive]
    DIRECTIVE_FLATTEN_POSITIONS: _ClassVar[Directive]
    DIRECTIVE_PAUSE_STRATEGIES: _ClassVar[Directive]

class Cause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAUSE_UNSPECIFIED: _ClassVar[Cause]
    CAUSE_TRIGGER: _ClassVar[Cause]
    CAUSE_BREAKER: _ClassVar[Cause]
    CAUSE_HEARTBEAT_LOST: _ClassVar[Cause]
    CAUSE_RESET: _ClassVar[Cause]
    CAUSE_REARM: _ClassVar[Cause]
    CAUSE_SYSTEM: _ClassVar[Cause]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELLED: _ClassVar[OrderStatus]
    ORDER_STATUS_REJECTED: _ClassVar[OrderStatus]
    ORDER_STATUS_EXPIRED: _ClassVar[OrderStatus]
    ORDER_STATUS_OPEN: _ClassVar[OrderStatus]

class WatchEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCH_EVENT_KIND_UNSPECIFIED: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_SNAPSHOT: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_SNAPSHOT_END: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_TRANSITION: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_HEARTBEAT: _ClassVar[WatchEventKind]
SCOPE_KIND_UNSPECIFIED: ScopeKind
SCOPE_KIND_GLOBAL: ScopeKind
SCOPE_KIND_ACCOUNT: ScopeKind
SCOPE_KIND_STRATEGY: ScopeKind
SCOPE_KIND_SYMBOL: ScopeKind
STATE_UNSPECIFIED: State
STATE_ARMED: State
STATE_REDUCE_ONLY: State
STATE_TRIPPED: State
STATE_COOLING_DOWN: State
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
DECISION_REASON_UNSPECIFIED: DecisionReason
DECISION_REASON_ALLOWED: DecisionReason
DECISION_REASON_SCOPE_TRIPPED: DecisionReason
DECISION_REASON_COOLING_DOWN: DecisionReason
DECISION_REASON_REDUCE_ONLY: DecisionReason
DECISION_REASON_MAX_ORDER_QUANTITY: DecisionReason
DECISION_REASON_MAX_ORDER_NOTIONAL: DecisionReason
DECISION_REASON_PRICE_BAND: DecisionReason
DECISION_REASON_ORDER_RATE: DecisionReason
DECISION_REASON_SYMBOL_EXPOSURE: DecisionReason
DECISION_REASON_STRATEGY_EXPOSURE: DecisionReason
DECISION_REASON_PORTFOLIO_EXPOSURE: DecisionReason
DECISION_REASON_MAX_POSITIONS: DecisionReason
DECISION_REASON_EQUITY_UNKNOWN: DecisionReason
DECISION_REASON_MAX_WORKING_ORDERS: DecisionReason
DECISION_REASON_DUPLICATE_ORDER: DecisionReason
DECISION_REASON_MARK_UNKNOWN: DecisionReason
DECISION_REASON_QUANTITY_UNREPRESENTABLE: DecisionReason
METRIC_UNSPECIFIED: Metric
METRIC_DAILY_DRAWDOWN_PCT: Metric
METRIC_WEEKLY_DRAWDOWN_PCT: Metric
METRIC_TOTAL_DRAWDOWN_PCT: Metric
METRIC_OPEN_LOSS_PCT: Metric
METRIC_EQUITY: Metric
METRIC_EXECUTION_ERROR: Metric
METRIC_API_ERROR: Metric
METRIC_ORDER_FAILURE: Metric
METRIC_TRADE_RESULT: Metric
METRIC_STOP_LOSS_HIT: Metric
METRIC_DATA_FEED_TICK: Metric
METRIC_DATA_FEED_CORRUPT: Metric
METRIC_SYSTEM_HEALTH: Metric
TRIGGER_REASON_UNSPECIFIED: TriggerReason
TRIGGER_REASON_USER_INITIATED: TriggerReason
TRIGGER_REASON_RISK_VIOLATION: TriggerReason
TRIGGER_REASON_SYSTEM_ERROR: TriggerReason
TRIGGER_REASON_MARKET_CONDITION: TriggerReason
TRIGGER_REASON_CONNECTIVITY_ISSUE: TriggerReason
TRIGGER_REASON_REGULATORY_HALT: TriggerReason
TRIGGER_MODE_UNSPECIFIED: TriggerMode
TRIGGER_MODE_HALT: TriggerMode
TRIGGER_MODE_REDUCE_ONLY: TriggerMode
DIRECTIVE_UNSPECIFIED: Directive
DIRECTIVE_CANCEL_OPEN_ORDERS: Directive
DIRECTIVE_FLATTEN_POSITIONS: Directive
DIRECTIVE_PAUSE_STRATEGIES: Directive
CAUSE_UNSPECIFIED: Cause
CAUSE_TRIGGER: Cause
CAUSE_BREAKER: Cause
CAUSE_HEARTBEAT_LOST: Cause
CAUSE_RESET: Cause
CAUSE_REARM: Cause
CAUSE_SYSTEM: Cause
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_CANCELLED: OrderStatus
ORDER_STATUS_REJECTED: OrderStatus
ORDER_STATUS_EXPIRED: OrderStatus
ORDER_STATUS_OPEN: OrderStatus
WATCH_EVENT_KIND_UNSPECIFIED: WatchEventKind
WATCH_EVENT_KIND_SNAPSHOT: WatchEventKind
WATCH_EVENT_KIND_SNAPSHOT_END: WatchEventKind
WATCH_EVENT_KIND_TRANSITION: WatchEventKind
WATCH_EVENT_KIND_HEARTBEAT: WatchEventKind

class Scope(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: ScopeKind
    id: str
    def __init__(self, kind: _Optional[_Union[ScopeKind, str]] = ..., id: _Optional[str] = ...) -> None: ...

class CheckOrderRequest(_message.Message):
    __slots__ = ("account", "strategy", "symbol", "side", "quantity", "price", "reduce_only", "client_order_id", "replaces_client_order_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACES_CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    account: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    price: float
    reduce_only: bool
    client_order_id: str
    replaces_client_order_id: str
    def __init__(self, account: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., reduce_only: _Optional[bool] = ..., client_order_id: _Optional[str] = ..., replaces_client_order_id: _Optional[str] = ...) -> None: ...

class CheckOrderResponse(_message.Message):
    __slots__ = ("allowed", "reason", "message", "state_version", "blocking_scope", "decision_id")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_SCOPE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: DecisionReason
    message: str
    state_version: int
    blocking_scope: Scope
    decision_id: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[_Union[DecisionReason, str]] = ..., message: _Optional[str] = ..., state_version: _Optional[int] = ..., blocking_scope: _Optional[_Union[Scope, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class CheckOrderStreamRequest(_message.Message):
    __slots__ = ("request_id", "order")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    order: CheckOrderRequest
    def __init__(self, request_id: _Optional[int] = ..., order: _Optional[_Union[CheckOrderRequest, _Mapping]] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("code", "field", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    field: str
    message: str
    def __init__(self, code: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CheckOrderStreamResponse(_message.Message):
    __slots__ = ("request_id", "decision", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    decision: CheckOrderResponse
    error: RequestError
    def __init__(self, request_id: _Optional[int] = ..., decision: _Optional[_Union[CheckOrderResponse, _Mapping]] = ..., error: _Optional[_Union[RequestError, _Mapping]] = ...) -> None: ...

class ReportMetricRequest(_message.Message):
    __slots__ = ("scope", "metric", "value")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    metric: Metric
    value: float
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., metric: _Optional[_Union[Metric, str]] = ..., value: _Optional[float] = ...) -> None: ...

class ReportMetricResponse(_message.Message):
    __slots__ = ("state", "tripped", "state_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIPPED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: State
    tripped: bool
    state_version: int
    def __init__(self, state: _Optional[_Union[State, str]] = ..., tripped: _Optional[bool] = ..., state_version: _Optional[int] = ...) -> None: ...

class ReportFillRequest(_message.Message):
    __slots__ = ("account", "strategy", "symbol", "side", "quantity", "price", "client_order_id", "fill_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    FILL_ID_FIELD_NUMBER: _ClassVar[int]
    account: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    price: float
    client_order_id: str
    fill_id: str
    def __init__(self, account: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., quantity: _Optional[float] = ..., price: _Optional[float] = ..., client_order_id: _Optional[str] = ..., fill_id: _Optional[str] = ...) -> None: ...

class ReportFillResponse(_message.Message):
    __slots__ = ("position", "duplicate", "unchecked", "account_state", "state_version")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    UNCHECKED_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    position: float
    duplicate: bool
    unchecked: bool
    account_state: State
    state_version: int
    def __init__(self, position: _Optional[float] = ..., duplicate: _Optional[bool] = ..., unchecked: _Optional[bool] = ..., account_state: _Optional[_Union[State, str]] = ..., state_version: _Optional[int] = ...) -> None: ...

class ReportOrderUpdateRequest(_message.Message):
    __slots__ = ("account", "client_order_id", "status", "remaining_quantity", "filled_quantity")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    status: OrderStatus
    remaining_quantity: float
    filled_quantity: float
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., remaining_quantity: _Optional[float] = ..., filled_quantity: _Optional[float] = ...) -> None: ...

class ReportOrderUpdateResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class OpenOrder(_message.Message):
    __slots__ = ("client_order_id", "strategy", "symbol", "side", "remaining_quantity", "price")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    remaining_quantity: float
    price: float
    def __init__(self, client_order_id: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., remaining_quantity: _Optional[float] = ..., price: _Optional[float] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("strategy", "symbol", "quantity", "mark_price")
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MARK_PRICE_FIELD_NUMBER: _ClassVar[int]
    strategy: str
    symbol: str
    quantity: float
    mark_price: float
    def __init__(self, strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., quantity: _Optional[float] = ..., mark_price: _Optional[float] = ...) -> None: ...

class SyncPositionsRequest(_message.Message):
    __slots__ = ("account", "equity", "positions", "open_orders", "open_orders_complete", "included_fills")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORDERS_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FILLS_FIELD_NUMBER: _ClassVar[int]
    account: str
    equity: float
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    open_orders: _containers.RepeatedCompositeFieldContainer[OpenOrder]
    open_orders_complete: bool
    included_fills: _containers.RepeatedCompositeFieldContainer[IncludedFills]
    def __init__(self, account: _Optional[str] = ..., equity: _Optional[float] = ..., positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., open_orders: _Optional[_Iterable[_Union[OpenOrder, _Mapping]]] = ..., open_orders_complete: _Optional[bool] = ..., included_fills: _Optional[_Iterable[_Union[IncludedFills, _Mapping]]] = ...) -> None: ...

class IncludedFills(_message.Message):
    __slots__ = ("client_order_id", "filled_quantity")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    filled_quantity: float
    def __init__(self, client_order_id: _Optional[str] = ..., filled_quantity: _Optional[float] = ...) -> None: ...

class SyncPositionsResponse(_message.Message):
    __slots__ = ("positions", "working_orders")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    WORKING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    positions: int
    working_orders: int
    def __init__(self, positions: _Optional[int] = ..., working_orders: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("executor_id", "scope", "ttl_ms", "deregister")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DEREGISTER_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    scope: Scope
    ttl_ms: int
    deregister: bool
    def __init__(self, executor_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., deregister: _Optional[bool] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("state", "state_version", "deregistered")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEREGISTERED_FIELD_NUMBER: _ClassVar[int]
    state: State
    state_version: int
    deregistered: bool
    def __init__(self, state: _Optional[_Union[State, str]] = ..., state_version: _Optional[int] = ..., deregistered: _Optional[bool] = ...) -> None: ...

class TriggerRequest(_message.Message):
    __slots__ = ("scope", "reason", "reason_code", "mode", "directives", "drill")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVES_FIELD_NUMBER: _ClassVar[int]
    DRILL_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    reason: str
    reason_code: TriggerReason
    mode: TriggerMode
    directives: _containers.RepeatedScalarFieldContainer[Directive]
    drill: bool
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., reason: _Optional[str] = ..., reason_code: _Optional[_Union[TriggerReason, str]] = ..., mode: _Optional[_Union[TriggerMode, str]] = ..., directives: _Optional[_Iterable[_Union[Directive, str]]] = ..., drill: _Optional[bool] = ...) -> None: ...

class TriggerResponse(_message.Message):
    __slots__ = ("state", "state_version")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    state: State
    state_version: int
    def __init__(self, state: _Optional[_Union[State, str]] = ..., state_version: _Optional[int] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("scope", "reason", "force", "latches", "expected_version", "expected_epoch")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    LATCHES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    reason: str
    force: bool
    latches: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    expected_epoch: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ..., latches: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ..., expected_epoch: _Optional[str] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("state", "state_version", "pending_approval", "requested_by", "approval_expires_at")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    state: State
    state_version: int
    pending_approval: bool
    requested_by: str
    approval_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[State, str]] = ..., state_version: _Optional[int] = ..., pending_approval: _Optional[bool] = ..., requested_by: _Optional[str] = ..., approval_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("include_working_orders", "working_orders_account", "include_heartbeats", "spelled_like")
    INCLUDE_WORKING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    WORKING_ORDERS_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    SPELLED_LIKE_FIELD_NUMBER: _ClassVar[int]
    include_working_orders: bool
    working_orders_account: str
    include_heartbeats: bool
    spelled_like: Scope
    def __init__(self, include_working_orders: _Optional[bool] = ..., working_orders_account: _Optional[str] = ..., include_heartbeats: _Optional[bool] = ..., spelled_like: _Optional[_Union[Scope, _Mapping]] = ...) -> None: ...

class SpelledAlike(_message.Message):
    __slots__ = ("scope", "unseen", "alike", "partial")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    UNSEEN_FIELD_NUMBER: _ClassVar[int]
    ALIKE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    unseen: bool
    alike: _containers.RepeatedCompositeFieldContainer[Scope]
    partial: bool
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., unseen: _Optional[bool] = ..., alike: _Optional[_Iterable[_Union[Scope, _Mapping]]] = ..., partial: _Optional[bool] = ...) -> None: ...

class HeartbeatRegistration(_message.Message):
    __slots__ = ("executor_id", "scope", "ttl_ms", "last_beat", "lapsed", "owner")
    EXECUTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_BEAT_FIELD_NUMBER: _ClassVar[int]
    LAPSED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    executor_id: str
    scope: Scope
    ttl_ms: int
    last_beat: _timestamp_pb2.Timestamp
    lapsed: bool
    owner: str
    def __init__(self, executor_id: _Optional[str] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., ttl_ms: _Optional[int] = ..., last_beat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lapsed: _Optional[bool] = ..., owner: _Optional[str] = ...) -> None: ...

class WorkingOrder(_message.Message):
    __slots__ = ("account", "client_order_id", "strategy", "symbol", "side", "quantity", "remaining_quantity", "price", "since", "decision_id")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    remaining_quantity: float
    price: float
    since: _timestamp_pb2.Timestamp
    decision_id: str
    def __init__(self, account: _Optional[str] = ..., client_order_id: _Optional[str] = ..., strategy: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., quantity: _Optional[float] = ..., remaining_quantity: _Optional[float] = ..., price: _Optional[float] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decision_id: _Optional[str] = ...) -> None: ...

class WorkingOrderCount(_message.Message):
    __slots__ = ("account", "working_orders")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    WORKING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    account: str
    working_orders: int
    def __init__(self, account: _Optional[str] = ..., working_orders: _Optional[int] = ...) -> None: ...

class ScopeState(_message.Message):
    __slots__ = ("scope", "state", "reason", "since", "actor", "cause", "breaker", "reason_code", "directives", "version", "rearm_at", "reset_allowed_at", "drill", "reset_requested_by", "reset_approval_expires_at", "latches", "reset_request_reason", "reset_request_force", "reset_request_latches", "epoch", "auto_rearming_latches")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REARM_AT_FIELD_NUMBER: _ClassVar[int]
    RESET_ALLOWED_AT_FIELD_NUMBER: _ClassVar[int]
    DRILL_FIELD_NUMBER: _ClassVar[int]
    RESET_REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    RESET_APPROVAL_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LATCHES_FIELD_NUMBER: _ClassVar[int]
    RESET_REQUEST_REASON_FIELD_NUMBER: _ClassVar[int]
    RESET_REQUEST_FORCE_FIELD_NUMBER: _ClassVar[int]
    RESET_REQUEST_LATCHES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    AUTO_REARMING_LATCHES_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    state: State
    reason: str
    since: _timestamp_pb2.Timestamp
    actor: str
    cause: Cause
    breaker: str
    reason_code: TriggerReason
    directives: _containers.RepeatedScalarFieldContainer[Directive]
    version: int
    rearm_at: _timestamp_pb2.Timestamp
    reset_allowed_at: _timestamp_pb2.Timestamp
    drill: bool
    reset_requested_by: str
    reset_approval_expires_at: _timestamp_pb2.Timestamp
    latches: _containers.RepeatedCompositeFieldContainer[Latch]
    reset_request_reason: str
    reset_request_force: bool
    reset_request_latches: _containers.RepeatedScalarFieldContainer[str]
    epoch: str
    auto_rearming_latches: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., state: _Optional[_Union[State, str]] = ..., reason: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., cause: _Optional[_Union[Cause, str]] = ..., breaker: _Optional[str] = ..., reason_code: _Optional[_Union[TriggerReason, str]] = ..., directives: _Optional[_Iterable[_Union[Directive, str]]] = ..., version: _Optional[int] = ..., rearm_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reset_allowed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., drill: _Optional[bool] = ..., reset_requested_by: _Optional[str] = ..., reset_approval_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., latches: _Optional[_Iterable[_Union[Latch, _Mapping]]] = ..., reset_request_reason: _Optional[str] = ..., reset_request_force: _Optional[bool] = ..., reset_request_latches: _Optional[_Iterable[str]] = ..., epoch: _Optional[str] = ..., auto_rearming_latches: _Optional[_Iterable[str]] = ...) -> None: ...

class Latch(_message.Message):
    __slots__ = ("name", "state", "since", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: State
    since: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[State, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class BreakerThreshold(_message.Message):
    __slots__ = ("scope", "breaker", "threshold", "window_ms", "consecutive", "mode", "auto_rearm", "disabled")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    AUTO_REARM_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    scope: str
    breaker: str
    threshold: float
    window_ms: int
    consecutive: int
    mode: TriggerMode
    auto_rearm: bool
    disabled: bool
    def __init__(self, scope: _Optional[str] = ..., breaker: _Optional[str] = ..., threshold: _Optional[float] = ..., window_ms: _Optional[int] = ..., consecutive: _Optional[int] = ..., mode: _Optional[_Union[TriggerMode, str]] = ..., auto_rearm: _Optional[bool] = ..., disabled: _Optional[bool] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("scopes", "state_version", "thresholds", "working_order_counts", "working_orders", "heartbeats", "spelled_alike", "heartbeats_registered")
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    WORKING_ORDER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    WORKING_ORDERS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_FIELD_NUMBER: _ClassVar[int]
    SPELLED_ALIKE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEATS_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    scopes: _containers.RepeatedCompositeFieldContainer[ScopeState]
    state_version: int
    thresholds: _containers.RepeatedCompositeFieldContainer[BreakerThreshold]
    working_order_counts: _containers.RepeatedCompositeFieldContainer[WorkingOrderCount]
    working_orders: _containers.RepeatedCompositeFieldContainer[WorkingOrder]
    heartbeats: _containers.RepeatedCompositeFieldContainer[HeartbeatRegistration]
    spelled_alike: SpelledAlike
    heartbeats_registered: int
    def __init__(self, scopes: _Optional[_Iterable[_Union[ScopeState, _Mapping]]] = ..., state_version: _Optional[int] = ..., thresholds: _Optional[_Iterable[_Union[BreakerThreshold, _Mapping]]] = ..., working_order_counts: _Optional[_Iterable[_Union[WorkingOrderCount, _Mapping]]] = ..., working_orders: _Optional[_Iterable[_Union[WorkingOrder, _Mapping]]] = ..., heartbeats: _Optional[_Iterable[_Union[HeartbeatRegistration, _Mapping]]] = ..., spelled_alike: _Optional[_Union[SpelledAlike, _Mapping]] = ..., heartbeats_registered: _Optional[int] = ...) -> None: ...

class ClearWorkingOrdersRequest(_message.Message):
    __slots__ = ("account", "client_order_ids", "reason")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account: str
    client_order_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, account: _Optional[str] = ..., client_order_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ClearWorkingOrdersResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...

class WatchStateRequest(_message.Message):
    __slots__ = ("scopes", "from_version", "epoch")
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    scopes: _containers.RepeatedCompositeFieldContainer[Scope]
    from_version: int
    epoch: str
    def __init__(self, scopes: _Optional[_Iterable[_Union[Scope, _Mapping]]] = ..., from_version: _Optional[int] = ..., epoch: _Optional[str] = ...) -> None: ...

class WatchStateResponse(_message.Message):
    __slots__ = ("kind", "scope", "state", "previous_state", "version", "reason", "actor", "time", "cause", "directives", "epoch", "drill", "latches")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVES_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DRILL_FIELD_NUMBER: _ClassVar[int]
    LATCHES_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEventKind
    scope: Scope
    state: State
    previous_state: State
    version: int
    reason: str
    actor: str
    time: _timestamp_pb2.Timestamp
    cause: Cause
    directives: _containers.RepeatedScalarFieldContainer[Directive]
    epoch: str
    drill: bool
    latches: _containers.RepeatedCompositeFieldContainer[Latch]
    def __init__(self, kind: _Optional[_Union[WatchEventKind, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., state: _Optional[_Union[State, str]] = ..., previous_state: _Optional[_Union[State, str]] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cause: _Optional[_Union[Cause, str]] = ..., directives: _Optional[_Iterable[_Union[Directive, str]]] = ..., epoch: _Optional[str] = ..., drill: _Optional[bool] = ..., latches: _Optional[_Iterable[_Union[Latch, _Mapping]]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("scope", "since", "until", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("version", "time", "scope", "state", "previous_state", "reason", "actor", "cause", "breaker", "reason_code", "directives", "forced", "approved_by", "drill", "latches")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    DIRECTIVES_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    DRILL_FIELD_NUMBER: _ClassVar[int]
    LATCHES_FIELD_NUMBER: _ClassVar[int]
    version: int
    time: _timestamp_pb2.Timestamp
    scope: Scope
    state: State
    previous_state: State
    reason: str
    actor: str
    cause: Cause
    breaker: str
    reason_code: TriggerReason
    directives: _containers.RepeatedScalarFieldContainer[Directive]
    forced: bool
    approved_by: str
    drill: bool
    latches: _containers.RepeatedCompositeFieldContainer[Latch]
    def __init__(self, version: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., state: _Optional[_Union[State, str]] = ..., previous_state: _Optional[_Union[State, str]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., cause: _Optional[_Union[Cause, str]] = ..., breaker: _Optional[str] = ..., reason_code: _Optional[_Union[TriggerReason, str]] = ..., directives: _Optional[_Iterable[_Union[Directive, str]]] = ..., forced: _Optional[bool] = ..., approved_by: _Optional[str] = ..., drill: _Optional[bool] = ..., latches: _Optional[_Iterable[_Union[Latch, _Mapping]]] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
