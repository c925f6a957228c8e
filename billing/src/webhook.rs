//! Stripe webhook signatures: checking the `Stripe-Signature` header of an incoming event, and
//! making one (for tests and the loopback Stripe).
//!
//! The header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, with more `v1`
//! values while a secret is being rolled and a `v0` in test mode (ignored). The event is handed
//! on as JSON rather than as async-stripe's typed `Event`, so that an object shape from a newer
//! API version than the one async-stripe was generated from cannot make a valid event unreadable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::Deserialize;

use crate::error::{BillingError, Result};

/// Stripe's own libraries refuse events signed more than five minutes from now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// An event whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `evt_...`: the same event can arrive more than once; this is what to deduplicate on.
    pub id: String,
    /// The event's `type`, such as `checkout.session.completed`.
    pub kind: String,
    pub created: DateTime<Utc>,
    /// `data.object`: the object as it was when the event happened.
    pub object: serde_json::Value,
}

/// Checks that `payload` (the raw request body, byte for byte) was signed with `secret` no more
/// than `tolerance` away from `now`, then reads the event.
///
/// # Errors
/// [`BillingError::Invalid`] for a malformed header, no matching `v1` signature, a timestamp
/// outside the tolerance, an empty secret, or a body that is not a Stripe event.
pub fn verify_webhook(
    payload: &[u8],
    signature_header: &str,
    secret: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<WebhookEvent> {
    if secret.is_empty() {
        return Err(BillingError::Invalid(
            "the webhook signing secret is empty".to_owned(),
        ));
    }
    let header = Header::parse(signature_header)?;
    let mac = mac(secret, header.t_text, payload);
    // Each candidate is compared in constant time (`verify_slice`); which of them matched, if
    // any, is not secret.
    let matches = header
        .v1
        .iter()
        .filter_map(|candidate| decode_hex(candidate))
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if !matches {
        return Err(BillingError::Invalid(
            "webhook signature does not match".to_owned(),
        ));
    }
    let age = now.timestamp().abs_diff(header.t);
    if age > tolerance.as_secs() {
        return Err(BillingError::Invalid(format!(
            "webhook signed {age} s away from now (tolerance {} s): a replay or a wrong clock",
            tolerance.as_secs()
        )));
    }
    parse_event(payload)
}

/// The `Stripe-Signature` header Stripe would send for `payload` signed with `secret` at unix
/// time `t`.
pub fn signature_header(payload: &[u8], secret: &str, t: i64) -> String {
    let digest = mac(secret, &t.to_string(), payload).finalize().into_bytes();
    format!("t={t},v1={}", encode_hex(&digest))
}

fn mac(secret: &str, t: &str, payload: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this cannot fail; `new_from_slice` is the only
    // constructor for a key known at run time.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

struct Header<'a> {
    t: i64,
    /// `t` as it was signed: the digits in the header, not a re-rendering of the number.
    t_text: &'a str,
    v1: Vec<&'a str>,
}

impl<'a> Header<'a> {
    fn parse(header: &'a str) -> Result<Self> {
        let malformed =
            |why: &str| BillingError::Invalid(format!("malformed Stripe-Signature header: {why}"));
        let mut t = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            let Some((key, value)) = part.trim().split_once('=') else {
                return Err(malformed("a part without '='"));
            };
            match key {
                // Stripe sends one; its libraries take the first.
                "t" if t.is_none() => t = Some(value),
                "v1" => v1.push(value),
                _ => {}
            }
        }
        let t_text = t.ok_or_else(|| malformed("no timestamp"))?;
        let t = t_text
            .parse::<i64>()
            .map_err(|_| malformed("the timestamp is not a number"))?;
        if v1.is_empty() {
            return Err(malformed("no v1 signature"));
        }
        Ok(Self { t, t_text, v1 })
    }
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

fn parse_event(payload: &[u8]) -> Result<WebhookEvent> {
    let raw: RawEvent = serde_json::from_slice(payload)
        .map_err(|e| BillingError::Invalid(format!("webhook body is not a Stripe event: {e}")))?;
    let created = DateTime::from_timestamp(raw.created, 0).ok_or_else(|| {
        BillingError::Invalid(format!(
            "webhook event created at {} is out of range",
            raw.created
        ))
    })?;
    Ok(WebhookEvent {
        id: raw.id,
        kind: raw.kind,
        created,
        object: raw.data.object,
    })
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed apart from this code, with
    /// `printf '%s' "1700000000.$PAYLOAD" | openssl dgst -sha256 -hmac whsec_test_fixed_vector`.
    const PAYLOAD: &str = r#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000,"data":{"object":{"id":"in_1","object":"invoice"}}}"#;
    const SECRET: &str = "whsec_test_fixed_vector";
    const T: i64 = 1_700_000_000;
    const OPENSSL_V1: &str = "53bb75fcb2c0ccb58701975c8247f5d2ecdb3d6263f910e2d69a320cb5a23797";

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap_or_else(|| panic!("timestamp {t}"))
    }

    fn verify(header: &str, secret: &str, now: i64) -> Result<WebhookEvent> {
        verify_webhook(
            PAYLOAD.as_bytes(),
            header,
            secret,
            at(now),
            DEFAULT_TOLERANCE,
        )
    }

    #[test]
    fn signature_header_matches_an_independently_computed_hmac() {
        assert_eq!(
            signature_header(PAYLOAD.as_bytes(), SECRET, T),
            format!("t={T},v1={OPENSSL_V1}")
        );
    }

    #[test]
    fn a_good_signature_yields_the_event() {
        let event = verify(&format!("t={T},v1={OPENSSL_V1}"), SECRET, T + 10)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, "invoice.paid");
        assert_eq!(event.created, at(T));
        assert_eq!(
            event.object,
            serde_json::json!({"id": "in_1", "object": "invoice"})
        );
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let err =
            verify(&format!("t={T},v1={OPENSSL_V1}"), "whsec_other", T).expect_err("wrong secret");
        assert_eq!(
            err,
            BillingError::Invalid("webhook signature does not match".to_owned())
        );
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let tampered = PAYLOAD.replace("in_1", "in_2");
        let err = verify_webhook(
            tampered.as_bytes(),
            &format!("t={T},v1={OPENSSL_V1}"),
            SECRET,
            at(T),
            DEFAULT_TOLERANCE,
        )
        .expect_err("tampered body");
        assert_eq!(
            err,
            BillingError::Invalid("webhook signature does not match".to_owned())
        );
        // Nor can the timestamp be moved without the signature breaking.
        let err = verify(&format!("t={},v1={OPENSSL_V1}", T + 1), SECRET, T).expect_err("moved t");
        assert_eq!(
            err,
            BillingError::Invalid("webhook signature does not match".to_owned())
        );
    }

    #[test]
    fn a_timestamp_outside_the_tolerance_is_refused_either_way() {
        let header = format!("t={T},v1={OPENSSL_V1}");
        assert!(verify(&header, SECRET, T + 300).is_ok());
        assert!(verify(&header, SECRET, T - 300).is_ok());
        for now in [T + 301, T - 301, T + 86_400] {
            let err = verify(&header, SECRET, now).expect_err("stale");
            assert!(err.to_string().contains("tolerance 300 s"), "{now}: {err}");
        }
        let tight = verify_webhook(
            PAYLOAD.as_bytes(),
            &header,
            SECRET,
            at(T + 11),
            Duration::from_secs(10),
        );
        assert!(tight.is_err());
    }

    #[test]
    fn any_v1_value_may_match_and_v0_is_ignored() {
        let wrong = "0".repeat(64);
        let header = format!("t={T},v1={wrong},v1={OPENSSL_V1},v0={wrong}");
        assert!(verify(&header, SECRET, T).is_ok());
        // Spaces after commas, as some proxies reformat headers.
        let header = format!("t={T}, v1=zz, v1={OPENSSL_V1}");
        assert!(verify(&header, SECRET, T).is_ok());
        // A matching v0 alone is not enough.
        let header = format!("t={T},v1={wrong},v0={OPENSSL_V1}");
        assert!(verify(&header, SECRET, T).is_err());
    }

    #[test]
    fn a_malformed_header_is_refused() {
        for header in [
            "",
            "garbage",
            &format!("v1={OPENSSL_V1}"),
            &format!("t=soon,v1={OPENSSL_V1}"),
            &format!("t={T}"),
            &format!("t={T},v0={OPENSSL_V1}"),
        ] {
            let err = verify(header, SECRET, T).expect_err(header);
            assert!(
                err.to_string()
                    .starts_with("malformed Stripe-Signature header"),
                "{header:?}: {err}"
            );
        }
        // Hex that is not hex, or the wrong length, simply does not match.
        for v1 in ["xyz", "abc", &OPENSSL_V1[..62]] {
            let err = verify(&format!("t={T},v1={v1}"), SECRET, T).expect_err(v1);
            assert_eq!(
                err,
                BillingError::Invalid("webhook signature does not match".to_owned())
            );
        }
    }

    #[test]
    fn an_empty_secret_is_a_configuration_error() {
        let header = signature_header(PAYLOAD.as_bytes(), "", T);
        let err = verify(&header, "", T).expect_err("empty secret");
        assert!(err.to_string().contains("secret is empty"), "{err}");
    }

    #[test]
    fn a_signed_body_that_is_not_an_event_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(body, SECRET, T);
        let err = verify_webhook(body, &header, SECRET, at(T), DEFAULT_TOLERANCE)
            .expect_err("not an event");
        assert!(err.to_string().contains("not a Stripe event"), "{err}");
    }
}
