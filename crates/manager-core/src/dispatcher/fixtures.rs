//! A claimed row and its delivery plan for the dispatcher's unit tests.

use super::outbox::{ClaimedRow, DeliveryPlan};

/// Outbox row 7: app `shop`, trigger `trg_1`, `orders`#3, first attempt.
pub(super) fn row() -> ClaimedRow {
    ClaimedRow {
        id: 7,
        app_id: "shop".into(),
        trigger_id: "trg_1".into(),
        topic: "orders".into(),
        seq: 3,
        dead_letter_id: None,
        attempts: 1,
    }
}

/// The plan of [`row`]: a webhook with no pacing, carrying `payload`.
pub(super) fn plan(payload: &str) -> DeliveryPlan {
    DeliveryPlan {
        outbox_id: 7,
        max_in_flight: None,
        max_per_second: None,
        handler_kind: "webhook".into(),
        handler_target: "http://127.0.0.1:1/hook".into(),
        secret: "whsec_x".into(),
        previous_secret: None,
        previous_secret_until: None,
        retry_max_attempts: 3,
        retry_schedule_ms: None,
        event_id: Some("evt_1".into()),
        event_type: Some("a\"b".into()),
        payload: Some(payload.as_bytes().to_vec()),
        published_at: Some(42),
    }
}
