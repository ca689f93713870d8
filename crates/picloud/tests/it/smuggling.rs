//! Request smuggling: requests whose body framing is ambiguous, sent raw to the
//! direct path (the front door's subscription and preflight handling) and to routed
//! paths (hyper), with a publish under a real key hidden in the body. On neither path
//! may the hidden publish run, and the direct path is never more lenient than hyper.

use crate::common::raw::RawConnection;
use crate::common::spawn_app_with;
use picloud::config::ServeArgs;
use picloud_manager_core::backend_test;
use picloud_manager_core::testing::TestDb;
use reqwest::Method;
use serde_json::json;

/// What a path does with a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 400, then the connection is closed with nothing more sent.
    Refused,
    /// Answered, and the connection serves the next request: the body was read as a body.
    Served,
    /// Answered with `connection: close`, then closed with nothing more sent.
    Closed,
}
use Outcome::{Closed, Refused, Served};

/// One way to frame a body.
struct Variant {
    name: &'static str,
    /// Header lines (CRLF-terminated); `{n}` is replaced by the body's length.
    framing: &'static str,
    /// The body: the hidden request as is, chunk-encoded, or nothing.
    body: Body,
    /// The whole request with bare LF line endings.
    bare_lf: bool,
    /// What the direct path does, and what hyper does on a routed path.
    direct: Outcome,
    routed: Outcome,
}

#[derive(Clone, Copy)]
enum Body {
    Raw,
    Chunked,
    Empty,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "two lengths, zero first",
        framing: "content-length: 0\r\ncontent-length: {n}\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "two lengths, zero last",
        framing: "content-length: {n}\r\ncontent-length: 0\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "a list in one length",
        framing: "content-length: 0, {n}\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "a signed length",
        framing: "content-length: +{n}\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "a folded length",
        framing: "content-length: 0\r\n {n}\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "a space before the colon",
        framing: "content-length : {n}\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "bare LF, two lengths",
        framing: "content-length: 0\r\ncontent-length: {n}\r\n",
        body: Body::Raw,
        bare_lf: true,
        direct: Refused,
        routed: Refused,
    },
    Variant {
        name: "a non-chunked transfer-encoding",
        framing: "transfer-encoding: identity\r\n",
        body: Body::Raw,
        bare_lf: false,
        direct: Refused,
        routed: Refused,
    },
    // Framing hyper reads unambiguously, but which the direct path (whose requests
    // have no body) refuses rather than parse: it is stricter, never looser.
    Variant {
        name: "chunked",
        framing: "transfer-encoding: chunked\r\n",
        body: Body::Chunked,
        bare_lf: false,
        direct: Refused,
        routed: Served,
    },
    Variant {
        name: "a zero length, then chunked",
        framing: "content-length: 0\r\ntransfer-encoding: chunked\r\n",
        body: Body::Chunked,
        bare_lf: false,
        direct: Refused,
        routed: Closed,
    },
    Variant {
        name: "chunked, then a zero length",
        framing: "transfer-encoding: chunked\r\ncontent-length: 0\r\n",
        body: Body::Chunked,
        bare_lf: false,
        direct: Refused,
        routed: Closed,
    },
    Variant {
        name: "a zero length twice",
        framing: "content-length: 0\r\ncontent-length: 0\r\n",
        body: Body::Empty,
        bare_lf: false,
        direct: Refused,
        routed: Served,
    },
    // Plain framing, for contrast: both serve it.
    Variant {
        name: "one zero length",
        framing: "content-length: 0\r\n",
        body: Body::Empty,
        bare_lf: false,
        direct: Served,
        routed: Served,
    },
    Variant {
        name: "one zero length, padded",
        framing: "content-length:  00 \r\n",
        body: Body::Empty,
        bare_lf: false,
        direct: Served,
        routed: Served,
    },
];

/// The request lines and headers (without framing) of each path. Only preflights can
/// be served on the direct path and still show the next request's answer.
const DIRECT_PREFLIGHT: &str = "OPTIONS /v1/apps/shop/realtime?topic=news HTTP/1.1\r\nhost: x\r\norigin: http://app.example\r\naccess-control-request-method: GET\r\n";
const ROUTED_PREFLIGHT: &str = "OPTIONS /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\norigin: http://app.example\r\naccess-control-request-method: POST\r\n";
const DIRECT_GET: &str = "GET /v1/apps/shop/realtime?topic=news HTTP/1.1\r\nhost: x\r\n";
const ROUTED_GET: &str = "GET /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\n";

/// Sends `start` + the variant's framing + its body, then (if the connection stays open)
/// a health check, and returns what the path did.
async fn run(addr: std::net::SocketAddr, start: &str, variant: &Variant, hidden: &str) -> Outcome {
    let body = match variant.body {
        Body::Raw => hidden.to_owned(),
        Body::Chunked => format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len()),
        Body::Empty => String::new(),
    };
    let framing = variant.framing.replace("{n}", &body.len().to_string());
    let mut head = format!("{start}{framing}\r\n");
    if variant.bare_lf {
        head = head.replace("\r\n", "\n");
    }
    let mut connection = RawConnection::open(addr).await;
    connection.send(format!("{head}{body}").as_bytes()).await;
    let what = format!("{} on {}", variant.name, start.lines().next().unwrap());
    let first = connection
        .response()
        .await
        .unwrap_or_else(|| panic!("{what}: no answer"));
    if first.status == 400 {
        let rest = connection.rest_until_closed().await;
        assert!(
            rest.is_empty(),
            "{what}: more after the 400: {:?}",
            String::from_utf8_lossy(&rest)
        );
        if !first.body.is_empty() {
            assert_eq!(first.json()["error"]["code"], "invalid_request", "{what}");
        }
        return Refused;
    }
    assert!(first.status < 500, "{what}: {first:?}");
    if first.header("connection") == Some("close") {
        let rest = connection.rest_until_closed().await;
        assert!(
            rest.is_empty(),
            "{what}: more after the answer: {:?}",
            String::from_utf8_lossy(&rest)
        );
        return Closed;
    }
    connection
        .send(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let next = connection
        .response()
        .await
        .unwrap_or_else(|| panic!("{what}: closed after {first:?}"));
    assert_eq!(
        (next.status, next.json()),
        (200, json!({"status": "ok"})),
        "{what}: the next answer is the health check's"
    );
    Served
}

backend_test!(ambiguous_framing_never_runs_a_hidden_request_on_either_path);
async fn ambiguous_framing_never_runs_a_hidden_request_on_either_path(t: TestDb) {
    let mut args = ServeArgs::for_tests();
    args.cors_origins = "http://app.example".into();
    let app = spawn_app_with(t, args).await;
    app.create_app("shop").await;
    let key = app.create_key("shop", &["app:admin"]).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/apps/shop/topics",
            Some(&key),
            Some(json!({"name": "news", "auth_mode": "public"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            "/v1/apps/shop/topics/news/external",
            Some(&key),
            Some(json!({"external_subscribable": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let payload = r#"{"data":{"smuggled":true}}"#;
    let hidden = format!(
        "POST /v1/apps/shop/topics/news/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{payload}",
        payload.len()
    );

    for variant in VARIANTS {
        let direct = run(app.addr, DIRECT_PREFLIGHT, variant, &hidden).await;
        let routed = run(app.addr, ROUTED_PREFLIGHT, variant, &hidden).await;
        assert_eq!(
            (direct, routed),
            (variant.direct, variant.routed),
            "preflight, {}",
            variant.name
        );
        if variant.direct == Refused {
            // A subscription with a body is refused the same way (a served one would
            // be a stream, which has no next request to look at).
            assert_eq!(
                run(app.addr, DIRECT_GET, variant, &hidden).await,
                Refused,
                "subscription, {}",
                variant.name
            );
            assert_eq!(
                run(app.addr, ROUTED_GET, variant, &hidden).await,
                variant.routed,
                "GET, {}",
                variant.name
            );
        }
        // Wherever hyper refuses, the direct path refuses too.
        assert!(
            variant.routed != Refused || variant.direct == Refused,
            "{}",
            variant.name
        );
    }

    let (status, log) = app
        .call(
            Method::GET,
            "/v1/apps/shop/topics/news/events",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (log["events"].as_array().map(Vec::len), &log["last_seq"]),
        (Some(0), &json!(0)),
        "no hidden publish ran: {log}"
    );
    app.stop().await;
}
