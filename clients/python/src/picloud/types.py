"""The PiCloud API's wire types, generated from docs/openapi.json.

DO NOT EDIT: run ``python clients/python/scripts/generate.py`` after changing the
document; a test fails while this file is stale.

Objects are TypedDicts (responses are plain dicts); keys the document does not
require are ``NotRequired``. This module deliberately does not use
``from __future__ import annotations``: TypedDict must see ``NotRequired`` at runtime
to fill ``__required_keys__`` correctly, and everything here evaluates on 3.9.
"""

import sys
from typing import Any, Dict, List, Literal, Optional, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, TypedDict
else:
    from typing_extensions import NotRequired, TypedDict

AppId = str

#: How browsers authenticate to subscribe to an external topic.
AuthMode = Literal["public", "token"]

#: What a cron trigger does about ticks that passed while no node was running.
CatchUp = Literal["one", "none"]

#: A trigger's circuit breaker, maintained by the dispatcher.
CircuitState = Literal["closed", "open", "half_open"]

CronPattern = str

#: A machine-readable error code; clients match on these, never on messages.
ErrorCode = Literal["invalid_json", "invalid_request", "unsupported_media_type", "payload_too_large", "unauthorized", "forbidden", "not_found", "method_not_allowed", "app_not_found", "key_not_found", "app_exists", "topic_not_found", "topic_exists", "admin_exists", "trigger_not_found", "delivery_not_found", "dead_letter_not_found", "script_not_found", "source_not_found", "script_compile_error", "rate_limited", "unavailable", "internal", "request_timeout", "headers_too_large"]

#: Who may call a script as an HTTP function.
FunctionAccess = Literal["key", "public"]

#: What an API key may do. Every route names the scope it needs in [`crate::access`].
Scope = Literal["instance:admin", "app:admin", "app:read", "pubsub:publish", "pubsub:token", "triggers:manage", "deliveries:manage", "scripts:manage", "functions:invoke"]

#: What kind of database a source reads.
SourceKind = Literal["postgres_outbox"]

TimeZoneName = str

TopicName = str

TopicPattern = str

WebhookUrl = str


class Admin(TypedDict):
    """An admin account as listed: never its password hash."""

    #: The sign-in email, lower-cased.
    email: str
    #: Stable id.
    id: str


class ApiKey(TypedDict):
    """An API key as listed: never its secret."""

    #: The owning app; `null` for instance keys.
    app: NotRequired[Optional[str]]
    #: Creation time, ms since the epoch.
    created_at: int
    #: Stable id, used to revoke the key.
    id: str
    #: Last successful use, ms since the epoch, updated at most every few seconds.
    last_used_at: NotRequired[Optional[int]]
    #: What the key is for.
    name: str
    #: The first characters of the secret, to recognise it.
    prefix: str
    #: When the key was revoked, if it was.
    revoked_at: NotRequired[Optional[int]]
    #: What the key may do.
    scopes: List["Scope"]


class App(TypedDict):
    """An app as stored and as the API shows it."""

    #: Creation time, milliseconds since the epoch.
    created_at: int
    #: The app's slug, used in every URL under `/v1/apps/{app}`.
    id: "AppId"
    #: A display name.
    name: str


class AppList(TypedDict):
    """A list of apps."""

    #: The apps, by id.
    apps: List["App"]


class Attempt(TypedDict):
    """One attempt of a delivery."""

    #: 1 for the first attempt.
    attempt: int
    #: Duration, ms.
    duration_ms: int
    #: What went wrong; without `deliveries:manage` only its class (`http_status`,
    #: `timeout`, `connect_failed`, `refused_address`, `request_failed`, `script_failed`,
    #: `delivery_failed`).
    error: NotRequired[Optional[str]]
    #: The first KiB of the response body, kept only for JSON and plain-text answers;
    #: shown only with `deliveries:manage`.
    response_body: NotRequired[Optional[str]]
    #: The response body's size in bytes: as the receiver declared it, or as read when
    #: it ended within 64 KiB; `null` when unknown or no response came. Shown to every
    #: reader.
    response_bytes: NotRequired[Optional[int]]
    #: Start, ms.
    started_at: int
    #: HTTP status, if a response came.
    status_code: NotRequired[Optional[int]]


class BatchAnswer(TypedDict):
    """Answer to a batch publish."""

    #: One entry per event, in request order.
    events: List["PublishedEvent"]


class BatchBody(TypedDict):
    """Body of a batch publish: all events commit together or none does."""

    #: The events, in order; they may name different topics.
    events: List["BatchEvent"]


class BatchEvent(TypedDict):
    """One event of a batch."""

    #: Any JSON value, nested at most 64 arrays/objects deep.
    data: Any
    #: The topic.
    topic: str
    #: Event type; `message` if absent.
    type: NotRequired[Optional[str]]


class Count(TypedDict):
    """How many were replayed or purged."""

    #: The number.
    count: int


class CreateApp(TypedDict):
    """Body of `POST /v1/apps`."""

    #: The app's slug: 2-63 of `a-z 0-9 -`, starting with a letter.
    id: "AppId"
    #: A display name; defaults to the id.
    name: NotRequired[Optional[str]]


class CreateAppKey(TypedDict):
    """Body of `POST /v1/apps/{app}/keys`."""

    #: What the key is for.
    name: str
    #: App scopes the key holds (not `instance:admin`).
    scopes: List["Scope"]


class CreateInstanceKey(TypedDict):
    """Body of `POST /v1/keys`."""

    #: What the key is for.
    name: str
    #: Optional; if given, exactly `["instance:admin"]`.
    scopes: NotRequired[Optional[List["Scope"]]]


class CreateTopic(TypedDict):
    """Body of `POST /v1/apps/{app}/topics`."""

    auth_mode: NotRequired[Optional["AuthMode"]]
    #: 1-200 characters of letters, digits and `. _ - : /`.
    name: "TopicName"
    retention: NotRequired[Optional["Retention"]]


class CreatedKeyResponse(TypedDict):
    """A created key. `key` is the secret: this response is the only time it is shown."""

    #: The owning app, `null` for instance keys.
    app: NotRequired[Optional[str]]
    #: Creation time, ms since the epoch.
    created_at: int
    #: The key's id.
    id: str
    #: The secret, to send as `Authorization: Bearer <key>`.
    key: str
    #: The key's name.
    name: str
    #: The display prefix.
    prefix: str
    #: The key's scopes.
    scopes: List["Scope"]


class Trigger(TypedDict):
    """A trigger as the API shows it. Never includes its secret."""

    #: The owning app.
    app: str
    #: While the circuit is open: when one probe delivery is tried, ms since the epoch
    #: (null otherwise), so an admin can tell when deliveries may resume.
    circuit_probe_at: NotRequired[Optional[int]]
    #: The circuit breaker's state.
    circuit_state: "CircuitState"
    #: Failed deliveries in a row.
    consecutive_failures: int
    #: Creation time, ms since the epoch.
    created_at: int
    #: Why the server disabled it, if it did.
    disabled_reason: NotRequired[Optional[str]]
    #: Whether it fires; disabled triggers get no new deliveries.
    enabled: bool
    #: Where it delivers.
    handler: "Handler"
    #: `trg_` and 32 hex characters.
    id: str
    #: A `cron` trigger's next tick, ms since the epoch (null for other triggers, and
    #: for a schedule with no tick left).
    next_tick_at: NotRequired[Optional[int]]
    #: Whether deliveries of one topic go out one at a time, in seq order.
    ordered: bool
    #: Limits on how hard deliveries hit the endpoint.
    pacing: "Pacing"
    #: How failed deliveries are retried.
    retry: "RetryPolicy"
    #: What fires it.
    source: "TriggerSource"
    #: Last change, ms since the epoch.
    updated_at: int


class CreatedTrigger(Trigger):
    """A new trigger and its signing secret."""

    #: The signing secret, `whsec_` and base64. Also available later through reveal.
    secret: str


class DeadLetter(TypedDict):
    """A dead letter: a delivery whose attempts were exhausted."""

    #: Attempts made.
    attempts: int
    #: Dead-lettered at, ms.
    created_at: int
    #: Id.
    id: int
    #: The last error.
    last_error: NotRequired[Optional[str]]
    #: The last HTTP status.
    last_status: NotRequired[Optional[int]]
    #: The outbox row that died.
    outbox_id: int
    #: For a row of an outbox source that could not be published (`trigger_id` names
    #: the source, `outbox_id` the row): the row as JSON text (`topic`, `type`, `data`,
    #: `idempotency_key`). Absent for deliveries.
    payload: NotRequired[Optional[str]]
    #: Last replayed at, ms.
    replayed_at: NotRequired[Optional[int]]
    #: The event's seq.
    seq: int
    #: The event's topic.
    topic: str
    #: Its trigger.
    trigger_id: str


class DeadLetterDetail(DeadLetter):
    """A dead letter and its event (if still retained)."""

    event: NotRequired[Optional["LoggedEvent"]]


class DeadLetterList(TypedDict):
    """A page of dead letters, newest first."""

    #: The dead letters.
    dead_letters: List["DeadLetter"]


class Delivery(TypedDict):
    """One delivery: an event (or a dead letter) on its way to one trigger."""

    #: Attempts made (including one in flight).
    attempts: int
    #: Created, ms.
    created_at: int
    #: Set when this delivers a dead letter to a `dead_letter` trigger.
    dead_letter_id: NotRequired[Optional[int]]
    #: Finished (delivered, failed or dead), ms.
    finished_at: NotRequired[Optional[int]]
    #: Outbox id (the `webhook-id` is `msg_<id>`).
    id: int
    #: The last error.
    last_error: NotRequired[Optional[str]]
    #: The last HTTP status.
    last_status: NotRequired[Optional[int]]
    #: When the next attempt is due, ms.
    next_attempt_at: int
    #: The event's seq.
    seq: int
    #: `pending`, `delivered`, `failed` (a dead-letter delivery that gave up) or `dead`.
    state: Literal["pending", "delivered", "failed", "dead"]
    #: The event's topic.
    topic: str
    #: The trigger.
    trigger_id: str


class DeliveryDetail(TypedDict):
    """A delivery and its attempts, oldest first."""

    #: Its attempts, oldest first.
    attempts: List["Attempt"]
    #: Created, ms.
    created_at: int
    #: Set when this delivers a dead letter to a `dead_letter` trigger.
    dead_letter_id: NotRequired[Optional[int]]
    #: Finished (delivered, failed or dead), ms.
    finished_at: NotRequired[Optional[int]]
    #: Outbox id (the `webhook-id` is `msg_<id>`).
    id: int
    #: The last error.
    last_error: NotRequired[Optional[str]]
    #: The last HTTP status.
    last_status: NotRequired[Optional[int]]
    #: When the next attempt is due, ms.
    next_attempt_at: int
    #: The event's seq.
    seq: int
    #: `pending`, `delivered`, `failed` (a dead-letter delivery that gave up) or `dead`.
    state: Literal["pending", "delivered", "failed", "dead"]
    #: The event's topic.
    topic: str
    #: The trigger.
    trigger_id: str


class DeliveryList(TypedDict):
    """A page of deliveries, newest first."""

    #: The deliveries.
    deliveries: List["Delivery"]


class ErrorBody(TypedDict):
    """The JSON body of every error response."""

    #: The error.
    error: "ErrorDetail"


class ErrorDetail(TypedDict):
    """The inside of [`ErrorBody`]."""

    #: A stable machine-readable code.
    code: "ErrorCode"
    #: Column of the error in the submitted source (script compile errors only).
    column: NotRequired[Optional[int]]
    #: Line of the error in the submitted source (script compile errors only).
    line: NotRequired[Optional[int]]
    #: A human-readable explanation.
    message: str


class EventPage(TypedDict):
    """A page of a topic's log."""

    #: Events in seq order.
    events: List["LoggedEvent"]
    #: The topic's latest seq when read.
    last_seq: int


class HandlerWebhook(TypedDict):
    """An HTTP `POST` signed per Standard Webhooks with the trigger's secret."""

    kind: Literal["webhook"]
    #: The endpoint.
    url: "WebhookUrl"


class HandlerScript(TypedDict):
    """A script of the app, run with `event` (the body a webhook would get) and `delivery` (its id and attempt) in scope. Returning is delivered; throwing or running out of time is a failed attempt, retried like a webhook's."""

    kind: Literal["script"]
    #: The script's name.
    script: str


class KeyList(TypedDict):
    """A list of keys."""

    #: The keys, newest first, revoked ones included.
    keys: List["ApiKey"]


class LiveSubscribers(TypedDict):
    """Live subscribers of an app on this node."""

    #: Open streams of the app.
    streams: int
    #: Per topic with at least one listener: how many streams listen to it.
    topics: List["TopicSubscribers"]


class LoggedEvent(TypedDict):
    """An event as read back from the log."""

    #: The published `data`, exactly as sent.
    data: Any
    #: Globally unique id.
    id: str
    #: Commit time, ms since the epoch.
    published_at: int
    #: Position in the topic's log.
    seq: int
    #: The topic.
    topic: str
    #: The event type.
    type: str


class NewSource(TypedDict):
    """A new source."""

    #: The app database's URL (`postgres://relay:password@host:5432/db`): the role
    #: needs USAGE on the schema and SELECT, DELETE on its outbox (docs/sources.md).
    database_url: str
    #: What it reads: `postgres_outbox`.
    kind: "SourceKind"
    #: The outbox schema `picloud sources install` created (default `picloud`).
    schema: NotRequired[Optional[str]]


class NewTrigger(TypedDict):
    """What a new trigger is made of; also the body of `POST /v1/apps/{app}/triggers`."""

    #: Whether it fires; `true` if absent.
    enabled: NotRequired[bool]
    #: Where it delivers.
    handler: "Handler"
    #: Deliver one topic's events one at a time, in order; `false` if absent.
    ordered: NotRequired[bool]
    #: Limits on how hard deliveries hit the endpoint; 16 in flight, no rate limit if
    #: absent.
    pacing: NotRequired["Pacing"]
    #: How failed deliveries are retried; 8 attempts on the standard schedule if absent.
    retry: NotRequired["RetryPolicyRequest"]
    #: What fires it.
    source: "TriggerSource"


class Pacing(TypedDict):
    """How hard one node may push deliveries at a trigger's endpoint, so an endpoint coming back after an outage (or a replay) is not hit by the whole backlog at once."""

    #: Most deliveries in flight at once; `null` for no limit beyond the node's workers
    #: (the default).
    max_in_flight: NotRequired[Optional[int]]
    #: Most deliveries started per second; `null` for no rate limit (the default).
    max_per_second: NotRequired[Optional[int]]


class PublishBody(TypedDict):
    """Body of a single publish."""

    #: Any JSON value, nested at most 64 arrays/objects deep; stored and delivered
    #: exactly as sent.
    data: Any
    #: Event type; `message` if absent.
    type: NotRequired[Optional[str]]


class PublishedEvent(TypedDict):
    """What a publish of one event answered."""

    #: Outbox rows created: one per enabled trigger matching the topic.
    deliveries: int
    #: The event's id.
    id: str
    #: Commit time, ms since the epoch.
    published_at: int
    #: The event's seq in its topic.
    seq: int
    #: The topic.
    topic: str


class ReplayBody(TypedDict):
    """Body of a bulk replay."""

    #: These dead letters; or, if absent, every dead letter not replayed yet.
    ids: NotRequired[Optional[List[int]]]
    #: Pace: new deliveries per second (default 10, at most 1000).
    per_second: NotRequired[Optional[int]]


class Retention(TypedDict):
    """How much of a topic's log is kept. An event is pruned once it is beyond either limit, unless an undelivered outbox row or a dead letter still needs it. `null` means no limit of that kind."""

    #: Keep events at most this many seconds.
    max_age_secs: NotRequired[Optional[int]]
    #: Keep at most this many latest events.
    max_events: NotRequired[Optional[int]]


class RetryPolicy(TypedDict):
    """How often and when a failed delivery is retried. `schedule_secs` always holds exactly `max_attempts - 1` delays: the delay before the 2nd attempt, the 3rd, and so on. A shorter schedule (such as the default, Standard Webhooks' 5 s, 5 min, 30 min, 2 h, 5 h, 10 h) is extended by repeating its last delay. On the wire both fields are optional: `max_attempts` defaults to 8, `schedule_secs` to the standard schedule. A given schedule must be non-empty, hold at most 50 delays of 1 s to 7 days each, and no more than `max_attempts - 1` of them."""

    #: Delivery attempts in all, 1 to 50.
    max_attempts: int
    #: Seconds to wait before each retry.
    schedule_secs: List[int]


class RetryPolicyRequest(TypedDict):
    """A retry policy as a request gives it: either field may be left out (`max_attempts` defaults to 8, `schedule_secs` to the standard schedule). Responses always hold both (`RetryPolicy`)."""

    #: Delivery attempts in all, 1 to 50; 8 if absent.
    max_attempts: NotRequired[Optional[int]]
    #: Seconds to wait before each retry: 1 to 50 delays of 1 s to 7 days, at most
    #: `max_attempts - 1` of them; the standard schedule if absent.
    schedule_secs: NotRequired[Optional[List[int]]]


class RotatedKey(TypedDict):
    """The result of a rotation."""

    #: The new signing key's id.
    kid: str
    #: Until when tokens signed with earlier keys verify, ms since the epoch.
    previous_valid_until: int


class RotatedSecret(TypedDict):
    """A rotated signing secret."""

    #: Until when (ms since the epoch) deliveries are also signed with the old secret.
    previous_secret_expires_at: int
    #: The new secret, used to sign from now on.
    secret: str


class RunLogLine(TypedDict):
    """One line a script logged."""

    #: Milliseconds since the run started.
    at_ms: int
    #: `debug`, `info`, `warn` or `error`.
    level: str
    #: What it said.
    message: str


class Sample(TypedDict):
    """One sample: what happened during the interval that ended at `at`."""

    #: End of the interval, ms since the epoch.
    at: int
    #: Dead letters written (all nodes).
    dead_letters: int
    #: Webhook delivery attempts that failed (all nodes).
    deliveries_failed: int
    #: Webhook delivery attempts answered with a 2xx (all nodes).
    deliveries_ok: int
    #: Outbox rows waiting for delivery at `at` (all nodes).
    outbox_pending: int
    #: Events published (all nodes).
    publishes: int
    #: Open SSE streams on this node at `at`.
    sse_streams: int


class SaveScript(TypedDict):
    """Body of `PUT /v1/apps/{app}/scripts/{script}`."""

    access: NotRequired[Optional["FunctionAccess"]]
    #: The Rhai source (at most 256 KiB).
    source: str


class ScriptSummary(TypedDict):
    """A script as listed: its current version and settings, without the source."""

    #: Who may call it as an HTTP function.
    access: "FunctionAccess"
    #: First save, ms since the epoch.
    created_at: int
    #: The script's name.
    name: str
    #: Last save or restore, ms since the epoch.
    updated_at: int
    #: The current version (1 for the first save).
    version: int


class Script(ScriptSummary):
    """A script with the source of its current version."""

    #: The source of the current version.
    source: str


class ScriptList(TypedDict):
    """A list of scripts."""

    #: The scripts, by name.
    scripts: List["ScriptSummary"]


class ScriptRun(TypedDict):
    """A run as the API lists it."""

    #: The delivery that ran a trigger handler.
    delivery_id: NotRequired[Optional[int]]
    #: Lines logged over the limit, not kept.
    dropped_logs: int
    #: How long it ran, in microseconds (0 for a run refused before it started).
    duration_us: int
    #: Why it failed, when it did.
    error: NotRequired[Optional[str]]
    #: The run's id: later runs have larger ids.
    id: int
    #: How it ran: `function`, `handler`, `cron` or `test`.
    kind: str
    #: What it logged, in order.
    logs: List["RunLogLine"]
    #: `ok`, `error`, `timeout`, `overloaded` or `stopped`.
    outcome: str
    #: The `x-request-id` of the HTTP request that ran a function.
    request_id: NotRequired[Optional[str]]
    #: The script's name.
    script: str
    #: When it started, ms since the epoch.
    started_at: int
    #: The version that ran.
    version: int


class ScriptRunList(TypedDict):
    """A page of a script's runs."""

    #: The runs, newest first.
    runs: List["ScriptRun"]


class ScriptVersion(TypedDict):
    """One saved version of a script."""

    #: When it was saved, ms since the epoch.
    created_at: int
    #: Its source.
    source: str
    #: The version number.
    version: int


class ScriptVersionList(TypedDict):
    """A script's versions."""

    #: The versions, newest first.
    versions: List["ScriptVersion"]


class SessionInfo(TypedDict):
    """A signed-in session, as the dashboard sees it."""

    #: Who is signed in.
    admin: "Admin"
    #: Send it as `X-CSRF-Token` with every POST, PATCH and DELETE.
    csrf_token: str
    #: When the session ends, ms since the epoch.
    expires_at: int


class SetExternal(TypedDict):
    """Body of `PATCH /v1/apps/{app}/topics/{topic}/external`."""

    #: Whether browsers may subscribe to the topic.
    external_subscribable: bool


class SignIn(TypedDict):
    """Body of `POST /v1/admin/session`."""

    #: The admin's email (any case).
    email: str
    #: The admin's password.
    password: str


class Source(TypedDict):
    """A source as the API shows it: never with the database password."""

    #: Created at, ms since the epoch.
    created_at: int
    #: The app database's URL without its password.
    database_url: str
    #: Whether a relay runs for it.
    enabled: bool
    #: Id (`src_…`).
    id: str
    #: What it reads.
    kind: "SourceKind"
    #: The outbox schema in the app's database.
    schema: str
    #: The relay's last report.
    status: "SourceStatus"
    #: Last changed at, ms since the epoch.
    updated_at: int


class SourceList(TypedDict):
    """A list of sources."""

    #: The app's sources, oldest first.
    sources: List["Source"]


class SourcePatch(TypedDict):
    """A change to a source."""

    #: Run its relay (true) or stop it (false).
    enabled: bool


class SourceStatus(TypedDict):
    """How a source's relay is doing, as it last reported (every node answers the same)."""

    #: Whether the relay is connected to the app's database.
    connected: bool
    #: The last error, if any.
    last_error: NotRequired[Optional[str]]
    #: When it happened, ms since the epoch.
    last_error_at: NotRequired[Optional[int]]
    #: Age of the oldest waiting row at the last report, ms.
    oldest_waiting_ms: NotRequired[Optional[int]]
    #: The node running the relay, while its lease lasts.
    relay_node: NotRequired[Optional[str]]
    #: Rows relayed since the source was created (published, replayed or dead-lettered).
    relayed_total: int
    #: When the relay last reported, ms since the epoch.
    reported_at: NotRequired[Optional[int]]
    #: Rows waiting in the app's outbox at the last report.
    rows_waiting: NotRequired[Optional[int]]


class StatsSeries(TypedDict):
    """`GET /v1/admin/stats`."""

    #: The app the series is for; `null` for the whole instance.
    app: NotRequired[Optional[str]]
    #: Seconds each sample covers; divide counts by it for rates.
    interval_secs: int
    #: Oldest first.
    samples: List["Sample"]
    #: Seconds of history kept.
    window_secs: int


class Status(TypedDict):
    """A health or readiness answer."""

    #: `ok` or `ready`.
    status: str


class TestRequest(TypedDict):
    """The request a test run hands to `handle(req)`."""

    #: The request body.
    body: NotRequired[str]
    #: Request headers (a `content-type` of `application/json` fills `req.json`).
    headers: NotRequired[Dict[str, str]]
    #: `GET` or `POST` (default `POST`).
    method: NotRequired[Optional[str]]
    #: Query parameters.
    query: NotRequired[Dict[str, str]]


class TestRunFunction(TypedDict):
    """Call `handle(req)` with a request built from `request`."""

    kind: Literal["function"]
    #: The request the function gets (a bare `POST` when absent).
    request: NotRequired["TestRequest"]
    #: Run this source instead of the saved version (it is compiled, not saved).
    source: NotRequired[Optional[str]]


class TestRunHandler(TypedDict):
    """Run the script as a trigger handler with `event` and `delivery = #{id: 0, attempt: 1}` in scope."""

    #: The event envelope, as a webhook would get it.
    event: Any
    kind: Literal["handler"]
    #: Run this source instead of the saved version (it is compiled, not saved).
    source: NotRequired[Optional[str]]


class TestRunResult(TypedDict):
    """What a test run did."""

    #: Lines logged over the limit, not kept.
    dropped_logs: int
    #: How long it ran, in microseconds.
    duration_us: int
    #: Why it failed, with the line and column when the engine knows them.
    error: NotRequired[Optional[str]]
    #: What it logged.
    logs: List["RunLogLine"]
    #: `ok`, `error` or `timeout`.
    outcome: str
    #: What the run returned (a function's response map, a handler's last value); null
    #: when it failed.
    result: NotRequired[Any]


class TokenRequest(TypedDict):
    """Body of `POST /v1/apps/{app}/subscriber-tokens`."""

    #: An opaque subject (a user id, say), carried in the token.
    sub: NotRequired[Optional[str]]
    #: The topics the token lets its holder subscribe to: registered and external.
    topics: List[str]
    #: Lifetime in seconds, clamped to the server's range (default 1 h).
    ttl_secs: NotRequired[Optional[int]]


class TokenResponse(TypedDict):
    """A minted subscriber token."""

    #: Expiry, ms since the epoch.
    expires_at: int
    #: The compact JWS (HS256) to hand to a browser.
    token: str


class Topic(TypedDict):
    """A topic as the API shows it."""

    #: How subscribers authenticate.
    auth_mode: "AuthMode"
    #: Creation time, ms since the epoch.
    created_at: int
    #: Events currently retained in the log.
    event_count: int
    #: Whether browsers may subscribe (with `auth_mode`).
    external_subscribable: bool
    #: The seq of the latest event (0 before the first).
    last_seq: int
    #: The topic's name.
    name: str
    #: What is kept.
    retention: "Retention"
    #: Last change (including the last publish), ms since the epoch.
    updated_at: int


class TopicList(TypedDict):
    """A list of topics."""

    #: The topics, by name.
    topics: List["Topic"]


class TopicSubscribers(TypedDict):
    """One topic's live subscriber count."""

    #: Streams listening to it.
    subscribers: int
    #: The topic.
    topic: str


class TriggerList(TypedDict):
    """A list of triggers."""

    #: The app's triggers, oldest first.
    triggers: List["Trigger"]


class TriggerPatch(TypedDict):
    """A change to a trigger: every field is optional and only given ones change. Also the body of `PATCH /v1/apps/{app}/triggers/{trigger_id}`."""

    #: Enable or disable; enabling clears `disabled_reason`.
    enabled: NotRequired[Optional[bool]]
    handler: NotRequired[Optional["Handler"]]
    #: Turn in-order delivery on or off.
    ordered: NotRequired[Optional[bool]]
    pacing: NotRequired[Optional["Pacing"]]
    retry: NotRequired[Optional["RetryPolicyRequest"]]
    source: NotRequired[Optional["TriggerSource"]]


class TriggerSecret(TypedDict):
    """A trigger's signing secret."""

    #: `whsec_` and base64 of 32 bytes.
    secret: str


class TriggerSourceTopic(TypedDict):
    """Events published to topics matching `topic`."""

    kind: Literal["topic"]
    #: A topic name, `PREFIX.*` or `*`.
    topic: "TopicPattern"


class TriggerSourceDeadLetter(TypedDict):
    """The app's dead letters (deliveries that ran out of attempts). Failures of these triggers are never dead-lettered again."""

    kind: Literal["dead_letter"]


class TriggerSourceCron(TypedDict):
    """A schedule: each tick fires once, whatever the number of nodes, with `#{type: "cron.tick", app, trigger_id, scheduled_at}` as its event."""

    #: What to do about ticks that went by while no node ran: fire `one` for them
    #: all (the default), or `none`.
    catch_up: NotRequired["CatchUp"]
    kind: Literal["cron"]
    #: A cron pattern: five fields (minute first), or six with seconds first.
    schedule: "CronPattern"
    #: The IANA time zone the pattern is read in; `UTC` if absent.
    timezone: NotRequired["TimeZoneName"]


#: Where a trigger delivers.
Handler = Union[HandlerWebhook, HandlerScript]

#: Body of a test run: run the script as an HTTP function or as a trigger handler.
TestRun = Union[TestRunFunction, TestRunHandler]

#: What fires a trigger.
TriggerSource = Union[TriggerSourceTopic, TriggerSourceDeadLetter, TriggerSourceCron]

__all__ = [
    "Admin",
    "ApiKey",
    "App",
    "AppId",
    "AppList",
    "Attempt",
    "AuthMode",
    "BatchAnswer",
    "BatchBody",
    "BatchEvent",
    "CatchUp",
    "CircuitState",
    "Count",
    "CreateApp",
    "CreateAppKey",
    "CreateInstanceKey",
    "CreateTopic",
    "CreatedKeyResponse",
    "CreatedTrigger",
    "CronPattern",
    "DeadLetter",
    "DeadLetterDetail",
    "DeadLetterList",
    "Delivery",
    "DeliveryDetail",
    "DeliveryList",
    "ErrorBody",
    "ErrorCode",
    "ErrorDetail",
    "EventPage",
    "FunctionAccess",
    "Handler",
    "HandlerScript",
    "HandlerWebhook",
    "KeyList",
    "LiveSubscribers",
    "LoggedEvent",
    "NewSource",
    "NewTrigger",
    "Pacing",
    "PublishBody",
    "PublishedEvent",
    "ReplayBody",
    "Retention",
    "RetryPolicy",
    "RetryPolicyRequest",
    "RotatedKey",
    "RotatedSecret",
    "RunLogLine",
    "Sample",
    "SaveScript",
    "Scope",
    "Script",
    "ScriptList",
    "ScriptRun",
    "ScriptRunList",
    "ScriptSummary",
    "ScriptVersion",
    "ScriptVersionList",
    "SessionInfo",
    "SetExternal",
    "SignIn",
    "Source",
    "SourceKind",
    "SourceList",
    "SourcePatch",
    "SourceStatus",
    "StatsSeries",
    "Status",
    "TestRequest",
    "TestRun",
    "TestRunFunction",
    "TestRunHandler",
    "TestRunResult",
    "TimeZoneName",
    "TokenRequest",
    "TokenResponse",
    "Topic",
    "TopicList",
    "TopicName",
    "TopicPattern",
    "TopicSubscribers",
    "Trigger",
    "TriggerList",
    "TriggerPatch",
    "TriggerSecret",
    "TriggerSource",
    "TriggerSourceCron",
    "TriggerSourceDeadLetter",
    "TriggerSourceTopic",
    "WebhookUrl",
]
