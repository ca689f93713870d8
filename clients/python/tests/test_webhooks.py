"""Webhook verification: the Standard Webhooks test vector, and real deliveries."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

import picloud
from picloud import webhooks

# The Standard Webhooks reference test vector: standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, `test_sign_function` (the same values are
# used by the JavaScript, Go, ... libraries' tests of that repository).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
VECTOR_NOW = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=timezone.utc)
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": signature,
    }


def test_sign_reproduces_the_standard_webhooks_vector() -> None:
    assert webhooks.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == (
        VECTOR_SIGNATURE
    )


def test_verify_accepts_the_vector_and_returns_the_body() -> None:
    payload = webhooks.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_NOW)
    assert payload == {"test": 2432232314}
    # Bytes, header names in any case, the secret without its prefix.
    headers = {k.title(): v for k, v in vector_headers().items()}
    secret = VECTOR_SECRET.removeprefix("whsec_")
    assert webhooks.verify(secret, headers, VECTOR_BODY.encode(), now=VECTOR_NOW) == payload


def test_any_signature_of_several_may_match() -> None:
    header = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            VECTOR_SIGNATURE,
        ]
    )
    assert webhooks.verify(VECTOR_SECRET, vector_headers(header), VECTOR_BODY, now=VECTOR_NOW)


def test_either_of_two_secrets_verifies_during_rotation() -> None:
    both = [OTHER_SECRET, VECTOR_SECRET]
    assert webhooks.verify(both, vector_headers(), VECTOR_BODY, now=VECTOR_NOW)
    with pytest.raises(picloud.WebhookVerificationError) as wrong:
        webhooks.verify([OTHER_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_NOW)
    assert wrong.value.code == "webhook_invalid_signature"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"body": '{"test": 2432232315}'}, "webhook_invalid_signature"),
        (
            {"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="},
            "webhook_invalid_signature",
        ),
        ({"webhook-signature": "v2," + VECTOR_SIGNATURE[3:]}, "webhook_invalid_signature"),
        ({"webhook-id": "msg_other"}, "webhook_invalid_signature"),
        ({"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}, "webhook_invalid_signature"),
        ({"webhook-timestamp": "hello"}, "webhook_invalid_timestamp"),
        ({"webhook-id": None}, "webhook_missing_header"),
        ({"webhook-timestamp": None}, "webhook_missing_header"),
        ({"webhook-signature": None}, "webhook_missing_header"),
        ({"secret": "whsec_not base64!"}, "webhook_invalid_secret"),
    ],
)
def test_tampering_is_refused(change: dict[str, str | None], code: str) -> None:
    headers = vector_headers()
    body = change.pop("body", VECTOR_BODY) or VECTOR_BODY
    secret = change.pop("secret", VECTOR_SECRET) or VECTOR_SECRET
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(picloud.WebhookVerificationError) as refused:
        webhooks.verify(secret, headers, body, now=VECTOR_NOW)
    assert refused.value.code == code
    assert isinstance(refused.value, picloud.PicloudError)


def test_old_and_future_timestamps_are_refused() -> None:
    late = VECTOR_NOW + timedelta(minutes=5, seconds=1)
    early = VECTOR_NOW - timedelta(minutes=5, seconds=1)
    with pytest.raises(picloud.WebhookVerificationError) as old:
        webhooks.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=late)
    assert old.value.code == "webhook_timestamp_too_old"
    with pytest.raises(picloud.WebhookVerificationError) as new:
        webhooks.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=early)
    assert new.value.code == "webhook_timestamp_too_new"
    # Within tolerance (and a wider one) it passes.
    assert webhooks.verify(
        VECTOR_SECRET, vector_headers(), VECTOR_BODY, timedelta(minutes=10), now=late
    )
    # Without `now`, the real clock: the 2021 vector is long expired.
    with pytest.raises(picloud.WebhookVerificationError):
        webhooks.verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST and answers 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_real_delivery_verifies_with_the_triggers_secret(
    client: picloud.Client, receiver: Receiver
) -> None:
    from .support.server import wait_for

    trigger = client.triggers.create(
        {"kind": "topic", "topic": "orders"}, {"kind": "webhook", "url": receiver.url}
    )
    secret = client.triggers.get_secret(trigger["id"])
    assert secret == trigger["secret"]
    assert secret.startswith("whsec_")

    published = client.pubsub.publish("orders", "order.paid", data={"id": 42})
    wait_for("the webhook", lambda: receiver.requests, timeout=30)
    headers, body = receiver.requests[0]

    payload = webhooks.verify(secret, headers, body)
    assert payload["id"] == published["id"]
    assert (payload["topic"], payload["seq"], payload["type"]) == ("orders", 1, "order.paid")
    assert payload["data"] == {"id": 42}
    # The same bytes under another secret, or altered, do not verify.
    with pytest.raises(picloud.WebhookVerificationError):
        webhooks.verify(OTHER_SECRET, headers, body)
    with pytest.raises(picloud.WebhookVerificationError):
        webhooks.verify(secret, headers, body.replace(b"42", b"43"))

    # After a rotation deliveries carry both signatures: either secret verifies.
    rotated = client.triggers.rotate_secret(trigger["id"])
    assert rotated["secret"] != secret
    assert client.triggers.get_secret(trigger["id"]) == rotated["secret"]
    client.pubsub.publish("orders", data={"id": 43})
    wait_for("the second webhook", lambda: len(receiver.requests) >= 2, timeout=30)
    headers, body = receiver.requests[1]
    assert len(headers["webhook-signature"].split()) == 2
    assert webhooks.verify(rotated["secret"], headers, body)["data"] == {"id": 43}
    assert webhooks.verify(secret, headers, body)["data"] == {"id": 43}
    assert webhooks.verify([secret, rotated["secret"]], headers, body)["seq"] == 2
    delivery = client.deliveries.list(trigger=trigger["id"])[0]
    assert headers["webhook-id"] == f"msg_{delivery['id']}"
    wait_for(
        "the delivery to be marked delivered",
        lambda: client.deliveries.get(delivery["id"])["state"] == "delivered",
    )
