//! Property tests and a bounded fuzz run over the `wharf` crate's public API.
//!
//! What is proven, for every generated case (case counts keep the binary to a few seconds):
//!
//! - **AMQP mapping** (`broker::amqp::map`): any message whose short strings fit AMQP's 255
//!   bytes survives `to_amqp` → `from_amqp` unchanged: every header type (text, bytes, int,
//!   float — infinities, -0.0 and subnormals bit for bit, NaN as NaN — boolean, list, JSON
//!   objects nested to any depth), repeated header names in their order, the `x-amqp-*`
//!   properties, a topic that differs from the routing key, timestamps with and without
//!   milliseconds. Headers are compared sorted by name (AMQP tables are sorted), JSON headers
//!   as equal JSON values. The one documented change: an empty topic comes back as the
//!   routing key.
//! - **No input panics `to_amqp`**: strings of 0..600 bytes holding NUL, control characters
//!   and non-ASCII in every field, header name and JSON object key. The result is `Ok` only
//!   when nothing is over 255 bytes; otherwise a `Mapping` error naming the field.
//! - **JSON form** (`Message::to_json` / `from_json`): any message with finite floats and
//!   object-valued JSON headers survives the round trip, as a `Value` and as text (floats bit
//!   for bit); a non-finite float is refused by name rather than changed; any JSON document
//!   (and any text that parses) gives `Ok` or an error naming a field, and an accepted message
//!   round-trips again.
//! - **Store codec**: a message published to the embedded broker (SQLite in memory) and
//!   consumed back is unchanged, header values and payloads holding any bytes, JSON header
//!   text byte for byte.
//! - **Config fuzz**: `Config::load` on arbitrary TOML-ish text and on mutations of a full
//!   valid config (bit flips, truncation, duplicated, dropped and swapped lines, inserted
//!   bytes, values replaced by any TOML value including deep nesting) returns `Ok` (a config
//!   that validates again) or an `Err` with a message, never a panic.
//!
//! Failures print proptest's shrunk minimal input. Nothing is written to disk for regressions
//! (`failure_persistence: None`): the tests own no files besides their temporary ones.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Map, Value as Json};
use std::time::Duration;
use wharf::broker::amqp::map::{from_amqp, to_amqp};
use wharf::broker::{BrokerError, Delivery, EmbeddedConsumer};
use wharf::config::Config;
use wharf::message::{HeaderValue, Message};

/// AMQP's limit on a short string (ids, property values, header names, table keys).
const SHORT: usize = 255;

/// The headers that travel as AMQP properties (see the mapping table in `map.rs`).
const PROPERTY_HEADERS: [&str; 3] = ["x-amqp-type", "x-amqp-app-id", "x-amqp-content-encoding"];

/// `cases` cases; on failure, shrinking long enough to reach a readable minimal input (the
/// default stops after `4 × cases` steps, with messages of hundreds of bytes still unshrunk).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 100_000,
        max_shrink_time: 15_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any text, NUL, newlines and control characters included.
fn any_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => r"(?s:.){0,24}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Text a short-string field holds: at most 255 bytes (63 chars of up to 4 bytes, or ASCII
/// right up to the limit), no NUL (refused by the store and by C-string AMQP clients).
fn short_text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => r"[^\x00]{0,63}",
        1 => "[ -~]{250,255}",
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A header name a transport takes: 1..=255 bytes, no control characters, not in Wharf's own
/// `x-wharf-` / `x-amqp-` namespaces. Often from a small pool, so names repeat.
fn header_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(vec!["a", "b", "twice", "Content-Type", "ünïcödé", "x-death", "x-wharf"])
            .prop_map(String::from),
        3 => r"[^\p{Cc}]{1,40}",
        1 => "[a-z]{250,255}",
    ]
    .prop_filter("reserved header namespace", |name| {
        !name.starts_with("x-wharf-") && !name.starts_with("x-amqp-")
    })
    .boxed()
}

/// Every float: NaN (quiet and signalling), infinities, -0.0, subnormals.
fn any_float() -> BoxedStrategy<f64> {
    prop_oneof![
        4 => prop::num::f64::ANY | prop::num::f64::SIGNALING_NAN,
        1 => select(vec![f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0]),
    ]
    .boxed()
}

/// Finite floats only: JSON has no NaN or infinity.
fn finite_float() -> BoxedStrategy<f64> {
    prop_oneof![
        4 => any::<f64>(),
        1 => select(vec![-0.0, 0.0, 1.0, 0.1, f64::MAX, f64::MIN_POSITIVE]),
    ]
    .boxed()
}

/// A JSON scalar. Floats are eighths, exact in binary and in their shortest decimal text, so
/// that re-parsing them is exact whatever serde_json's float parsing precision.
fn json_leaf() -> BoxedStrategy<Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        (-8_000_000i32..8_000_000).prop_map(|n| Json::from(f64::from(n) / 8.0)),
        any_text().prop_map(Json::String),
    ]
    .boxed()
}

/// A JSON value nested up to `depth` levels, object keys from `key`.
fn json_value(depth: u32, key: BoxedStrategy<String>) -> BoxedStrategy<Json> {
    json_leaf()
        .prop_recursive(depth, 48, 5, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Json::Array),
                vec((key.clone(), inner), 0..5)
                    .prop_map(|fields| Json::Object(fields.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A JSON object (the shape of an AMQP field table), as the text a `HeaderValue::Json` holds.
fn json_object_text(key: BoxedStrategy<String>) -> BoxedStrategy<String> {
    vec((key.clone(), json_value(4, key)), 0..5)
        .prop_map(|fields| fields.into_iter().collect::<Map<_, _>>())
        // `{"bytes_base64": …}` alone is how the JSON form writes a byte header.
        .prop_filter("a lone bytes_base64 key", |doc| {
            !(doc.len() == 1 && doc.contains_key("bytes_base64"))
        })
        .prop_map(|doc| Json::Object(doc).to_string())
        .boxed()
}

/// Keys of JSON objects that fit AMQP's table keys.
fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec!["a", "b", "x-death", "count", "", "bytes_base64"]).prop_map(String::from),
        r"(?s:.){0,30}",
    ]
    .boxed()
}

fn header_value(
    float: BoxedStrategy<f64>,
    json: BoxedStrategy<String>,
) -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        any_text().prop_map(HeaderValue::Text),
        vec(any::<u8>(), 0..48).prop_map(HeaderValue::Bytes),
        any::<i64>().prop_map(HeaderValue::Int),
        float.prop_map(HeaderValue::Float),
        any::<bool>().prop_map(HeaderValue::Boolean),
        vec(any_text(), 0..5).prop_map(HeaderValue::List),
        json.prop_map(HeaderValue::Json),
    ]
    .boxed()
}

/// Bytes that are text (payload, key) half the time, anything otherwise.
fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..max),
        r"(?s:.){0,32}".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// A time in milliseconds a store keeps: up to `i64::MAX` (later ones are refused, or clamped
/// when another client sends them).
fn timestamp() -> BoxedStrategy<u64> {
    prop_oneof![
        Just(0),
        0..=i64::MAX as u64,
        (0u64..4_000_000_000).prop_map(|s| s * 1000),
        1_600_000_000_000u64..1_800_000_000_000,
    ]
    .boxed()
}

/// A message from the given strategies for its short strings (its id never empty), headers,
/// expiration and timestamp.
fn message_with(
    text: BoxedStrategy<String>,
    headers: BoxedStrategy<Vec<(String, HeaderValue)>>,
    expiration: BoxedStrategy<u64>,
    timestamp: BoxedStrategy<u64>,
) -> BoxedStrategy<Message> {
    let names = (text.clone(), text.clone(), option::of(bytes(32)), headers);
    let properties = (
        option::of(text.clone()),
        option::of(text.clone()),
        option::of(text),
        option::of(any::<u8>()),
        option::of(expiration),
        any::<bool>(),
    );
    let body = (bytes(256), timestamp);
    (names, properties, body)
        .prop_map(
            |(
                (id, topic, key, headers),
                (content_type, correlation_id, reply_to, priority, expiration_ms, persistent),
                (payload, timestamp_ms),
            )| Message {
                // An empty id is no id (a transport gives such a message one of its own).
                id: if id.is_empty() { "m".into() } else { id },
                topic,
                key,
                headers,
                content_type,
                correlation_id,
                reply_to,
                priority,
                expiration_ms,
                persistent,
                payload,
                timestamp_ms,
            },
        )
        .boxed()
}

/// Messages AMQP can carry: short strings within 255 bytes, any header values, and now and
/// then the headers that travel as AMQP properties.
fn amqp_message() -> BoxedStrategy<Message> {
    let headers = (
        vec(
            (
                header_name(),
                header_value(any_float(), json_object_text(json_key())),
            ),
            0..8,
        ),
        vec(option::of(short_text()), 3),
    )
        .prop_map(|(mut headers, properties)| {
            for (name, value) in PROPERTY_HEADERS.iter().zip(properties) {
                if let Some(value) = value {
                    headers.push(((*name).to_owned(), HeaderValue::Text(value)));
                }
            }
            headers
        })
        .boxed();
    message_with(
        short_text(),
        headers,
        (0..=i64::MAX as u64).boxed(),
        timestamp(),
    )
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// Whether two header values are the same: floats bit for bit (any NaN equals any NaN), JSON
/// documents as equal JSON values (the text may differ in spacing and key order).
fn same_value(a: &HeaderValue, b: &HeaderValue) -> bool {
    match (a, b) {
        (HeaderValue::Float(x), HeaderValue::Float(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (HeaderValue::Json(x), HeaderValue::Json(y)) => {
            match (
                serde_json::from_str::<Json>(x),
                serde_json::from_str::<Json>(y),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => x == y,
            }
        }
        _ => a == b,
    }
}

fn same_headers(
    got: &[(String, HeaderValue)],
    want: &[(String, HeaderValue)],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        got.len(),
        want.len(),
        "header count: got {:?}, want {:?}",
        got,
        want
    );
    for (i, ((gn, gv), (wn, wv))) in got.iter().zip(want).enumerate() {
        prop_assert!(
            gn == wn && same_value(gv, wv),
            "header {}: got {:?} = {:?}, want {:?} = {:?}",
            i,
            gn,
            gv,
            wn,
            wv
        );
    }
    Ok(())
}

/// Headers sorted by name, stably: repeated names keep their order among themselves.
fn sorted(headers: &[(String, HeaderValue)]) -> Vec<(String, HeaderValue)> {
    let mut headers = headers.to_vec();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

/// Asserts `got` is `want`, headers compared in order with [`same_value`].
fn same_message(got: &Message, want: &Message) -> Result<(), TestCaseError> {
    same_headers(&got.headers, &want.headers)?;
    let strip = |m: &Message| Message {
        headers: Vec::new(),
        ..m.clone()
    };
    prop_assert_eq!(strip(got), strip(want));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. AMQP mapping round trip
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn amqp_mapping_round_trips_every_field(
        msg in amqp_message(),
        routing_key in option::of(short_text()),
    ) {
        // Sent with its own topic as routing key, or with another key.
        let routing_key = routing_key.unwrap_or_else(|| msg.topic.clone());
        let props = to_amqp(&msg, &routing_key)
            .map_err(|e| TestCaseError::fail(format!("to_amqp refused a valid message: {e}")))?;
        let back = from_amqp(&routing_key, &props, msg.payload.clone());

        let mut want = msg.clone();
        if want.topic.is_empty() {
            // Documented: a message without a topic is given the routing key it arrived with.
            want.topic = routing_key.clone();
        }
        want.headers = sorted(&want.headers);
        let got = Message { headers: sorted(&back.headers), ..back };
        same_message(&got, &want)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. No input makes `to_amqp` panic
// ---------------------------------------------------------------------------------------------

/// Any text of 0..600 bytes: NUL, control characters, non-ASCII, and lengths either side of
/// 255 bytes.
fn wild_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => r"(?s:.){0,150}",
        2 => r"[\x00-\x7f]{0,600}",
        1 => "[é]{100,300}",
        1 => "[a-z]{254,257}",
    ]
    .boxed()
}

/// JSON objects whose keys may be long (300 bytes), at the top or nested.
fn json_with_long_keys() -> BoxedStrategy<String> {
    let key = prop_oneof![
        3 => json_key(),
        1 => "[k]{250,300}",
        1 => "[ü]{120,150}",
    ]
    .boxed();
    prop_oneof![
        4 => json_object_text(key),
        // Not JSON at all, or not an object: sent as text or as the scalar.
        1 => wild_text(),
        1 => select(vec!["[1,\"a\"]", "null", "3.5", "\"s\"", "[]", "{"]).prop_map(String::from),
    ]
    .boxed()
}

/// What a message holds that AMQP cannot: `(field, detail)` for each value over 255 bytes.
fn over_long(msg: &Message) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (name, value) in &msg.headers {
        match (name.as_str(), value) {
            (property, HeaderValue::Text(text)) if PROPERTY_HEADERS.contains(&property) => {
                if text.len() > SHORT {
                    found.push((property.to_owned(), "property value".to_owned()));
                }
            }
            _ => {
                if name.len() > SHORT {
                    found.push(("header name".to_owned(), name.clone()));
                }
                if let HeaderValue::Json(text) = value
                    && let Ok(doc) = serde_json::from_str::<Json>(text)
                    && has_long_key(&doc)
                {
                    found.push((format!("headers.{name}"), "JSON object key".to_owned()));
                }
            }
        }
    }
    for (field, value) in [
        ("id", Some(&msg.id)),
        ("content_type", msg.content_type.as_ref()),
        ("correlation_id", msg.correlation_id.as_ref()),
        ("reply_to", msg.reply_to.as_ref()),
    ] {
        if value.is_some_and(|v| v.len() > SHORT) {
            found.push((field.to_owned(), "value".to_owned()));
        }
    }
    found
}

fn has_long_key(doc: &Json) -> bool {
    match doc {
        Json::Object(fields) => fields
            .iter()
            .any(|(k, v)| k.len() > SHORT || has_long_key(v)),
        Json::Array(items) => items.iter().any(has_long_key),
        _ => false,
    }
}

/// Whether a text field or header name holds what a transport may refuse before any length
/// check (`Message::check_text`: NUL in a text field, an empty or control-character name).
fn has_refusable_text(msg: &Message) -> bool {
    [
        Some(&msg.id),
        Some(&msg.topic),
        msg.content_type.as_ref(),
        msg.correlation_id.as_ref(),
        msg.reply_to.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|v| v.contains('\0'))
        || msg
            .headers
            .iter()
            .any(|(name, _)| name.is_empty() || name.chars().any(char::is_control))
}

/// Whether the error's `field` names this over-long value. A JSON object key may be named by
/// its header (`headers.NAME`, the header name) or generically as a header.
fn names(field: &str, (want, _): &(String, String)) -> bool {
    field == want
        || (want == "header name" && field.starts_with("header"))
        || (want.starts_with("headers.") && (field.starts_with("header") || want.ends_with(field)))
}

fn wild_message() -> BoxedStrategy<Message> {
    let header = (
        prop_oneof![
            4 => wild_text(),
            1 => select(PROPERTY_HEADERS.to_vec()).prop_map(String::from),
        ],
        prop_oneof![
            2 => wild_text().prop_map(HeaderValue::Text),
            2 => json_with_long_keys().prop_map(HeaderValue::Json),
            1 => header_value(any_float(), json_with_long_keys()),
        ],
    );
    message_with(
        wild_text(),
        vec(header, 0..6).boxed(),
        any::<u64>().boxed(),
        timestamp(),
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn to_amqp_never_panics_and_names_what_it_refuses(
        msg in wild_message(),
        routing_key in wild_text(),
    ) {
        let too_long = over_long(&msg);
        match to_amqp(&msg, &routing_key) {
            Ok(_) => prop_assert!(
                too_long.is_empty(),
                "accepted although these are over {} bytes: {:?}", SHORT, too_long
            ),
            Err(e) => {
                let text = e.to_string();
                let BrokerError::Mapping { field, problem } = &e else {
                    return Err(TestCaseError::fail(format!("not a mapping error: {text}")));
                };
                prop_assert!(!field.is_empty() && !problem.is_empty(), "{}", text);
                prop_assert!(text.contains(field.as_str()), "names the field: {}", text);
                prop_assert!(
                    too_long.iter().any(|over| names(field, over)) || has_refusable_text(&msg),
                    "refused `{}` ({}), but what is over {} bytes is {:?}",
                    field, problem, SHORT, too_long
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The JSON form
// ---------------------------------------------------------------------------------------------

/// Messages the JSON form carries: any text anywhere, finite floats, object-valued JSON
/// headers (what `from_json` makes of a JSON object), any header names.
fn json_form_message() -> BoxedStrategy<Message> {
    let name = prop_oneof![header_name(), any_text()].boxed();
    let headers = vec(
        (
            name,
            header_value(finite_float(), json_object_text(json_key())),
        ),
        0..8,
    );
    message_with(
        any_text(),
        headers.boxed(),
        any::<u64>().boxed(),
        any::<u64>().boxed(),
    )
}

/// Keys that reach every branch of `from_json`, plus anything else.
fn message_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(vec![
            "id", "topic", "key", "key_base64", "headers", "content_type", "correlation_id",
            "reply_to", "priority", "expiration_ms", "persistent", "payload", "payload_base64",
            "timestamp_ms", "bytes_base64",
        ])
        .prop_map(String::from),
        1 => any_text(),
    ]
    .boxed()
}

/// Any JSON document, nested up to 6 levels, usually an object with message fields.
fn any_document() -> BoxedStrategy<Json> {
    let scalar = prop_oneof![
        json_leaf(),
        any::<u64>().prop_map(Json::from),
        finite_float().prop_map(Json::from),
        // Base64 that may or may not be valid.
        r"[A-Za-z0-9+/=]{0,12}".prop_map(Json::String),
    ];
    let value = scalar.prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Json::Array),
            vec((message_key(), inner), 0..5)
                .prop_map(|fields| Json::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    });
    prop_oneof![
        3 => vec((message_key(), value.clone()), 0..8)
            .prop_map(|fields| Json::Object(fields.into_iter().collect::<Map<_, _>>())),
        1 => value,
    ]
    .boxed()
}

/// Checks what `from_json` says of `doc`: an accepted message round-trips again, a refusal
/// names a field.
fn check_from_json(doc: &Json) -> Result<(), TestCaseError> {
    match Message::from_json(doc) {
        Ok(msg) => {
            let again = Message::from_json(&msg.to_json()).map_err(|e| {
                TestCaseError::fail(format!("an accepted message does not read back: {e}"))
            })?;
            same_message(&again, &msg)
        }
        Err(e) => {
            prop_assert!(!e.problem.is_empty(), "{}", e);
            prop_assert!(e.to_string().contains(&format!("`{}`", e.field)), "{}", e);
            // The field is the document itself, a header, or one of the document's keys (an
            // unknown key is named as written, even when it is "").
            let named = e.field == "(message)"
                || e.field == "headers"
                || e.field.starts_with("headers.")
                || doc.as_object().is_some_and(|o| o.contains_key(&e.field));
            prop_assert!(named, "the error names no field of the document: {}", e);
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn json_form_round_trips_every_field(msg in json_form_message()) {
        let doc = msg.to_json();
        let back = Message::from_json(&doc)
            .map_err(|e| TestCaseError::fail(format!("from_json refused to_json: {e}")))?;
        same_message(&back, &msg)?;
    }

    /// The JSON form as text, the way the command line and the HTTP API carry it: every float
    /// must come back bit for bit from its shortest decimal form.
    #[test]
    fn json_text_round_trips_every_field(msg in json_form_message()) {
        let text = msg.to_json().to_string();
        let reparsed: Json = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("to_json is not JSON text: {e}")))?;
        let back = Message::from_json(&reparsed)
            .map_err(|e| TestCaseError::fail(format!("from_json refused the text: {e}")))?;
        same_message(&back, &msg)?;
    }

    #[test]
    fn a_float_json_cannot_hold_is_refused_by_name_not_changed(
        msg in json_form_message(),
        name in header_name(),
        x in prop::num::f64::INFINITE | prop::num::f64::QUIET_NAN,
    ) {
        let mut msg = msg;
        msg.headers.push((name.clone(), HeaderValue::Float(x)));
        match Message::from_json(&msg.to_json()) {
            Ok(back) => same_message(&back, &msg)?,
            Err(e) => prop_assert!(e.field.contains(&name), "{}", e),
        }
    }

    #[test]
    fn from_json_never_panics_on_any_document(doc in any_document()) {
        check_from_json(&doc)?;
    }

    #[test]
    fn from_json_never_panics_on_any_text_that_parses(
        text in prop_oneof![
            r"(?s:.){0,200}",
            // JSON-ish text: braces, quotes, field names, numbers.
            r#"[{}\[\]",:0-9.eE+\- a-z_]{0,120}"#,
            // One known field with a value of any JSON type, well formed or not.
            concat!(
                r#"\{"(id|topic|key|headers|priority|payload|payload_base64|timestamp_ms)": ?"#,
                r#"(-?[0-9]{1,25}(\.[0-9]+)?|"[^"]{0,10}"|"#,
                r#"\[[^\]]{0,20}\]|\{[^}]{0,30}\}|true|null)\}"#,
            ),
        ],
    ) {
        if let Ok(doc) = serde_json::from_str::<Json>(&text) {
            check_from_json(&doc)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The store codec, through the embedded broker
// ---------------------------------------------------------------------------------------------

/// The next delivery, failing (not hanging) if none comes within 10 s.
async fn next_delivery(consumer: &mut EmbeddedConsumer) -> Result<Delivery, String> {
    match tokio::time::timeout(Duration::from_secs(10), consumer.next()).await {
        Ok(Ok(delivery)) => Ok(delivery),
        Ok(Err(e)) => Err(format!("the consumer failed: {e}")),
        Err(_) => Err("no delivery within 10 s".to_owned()),
    }
}

/// Messages the store keeps: no NUL in the text columns, header names the brokers take,
/// header values and payloads of any bytes (JSON header text not even JSON), every float.
fn stored_message() -> BoxedStrategy<Message> {
    let json = prop_oneof![json_object_text(json_key()), any_text()].boxed();
    let headers = vec((header_name(), header_value(any_float(), json)), 0..8);
    // An expiration long enough not to run out during the test.
    let expiration = (600_000u64..=i64::MAX as u64).boxed();
    let timestamp = prop_oneof![
        Just(0),
        0u64..=i64::MAX as u64,
        1_600_000_000_000u64..1_800_000_000_000,
    ]
    .boxed();
    message_with(short_text(), headers.boxed(), expiration, timestamp)
}

#[test]
fn the_store_keeps_every_field() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let broker = runtime.block_on(async {
        let store = wharf::store::Store::open("sqlite::memory:")
            .await
            .expect("an in-memory store opens");
        wharf::broker::EmbeddedBroker::new(store, wharf::broker::EmbeddedConfig::default())
    });
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&stored_message(), |sent| {
        runtime.block_on(async {
            broker
                .publish("properties", sent.clone())
                .await
                .map_err(|e| TestCaseError::fail(format!("publish refused: {e}")))?;
            let mut consumer = broker
                .consume("properties", 1)
                .await
                .map_err(|e| TestCaseError::fail(format!("consume failed: {e}")))?;
            let delivery = next_delivery(&mut consumer)
                .await
                .map_err(TestCaseError::fail)?;
            // Settle before comparing, so that a failing case leaves the queue empty.
            delivery
                .ack
                .ack()
                .await
                .map_err(|e| TestCaseError::fail(format!("ack failed: {e}")))?;
            consumer.close().await;
            prop_assert_eq!(delivery.deliveries, 1);
            same_message(&delivery.message, &sent)?;
            // The store keeps JSON header text as written, not merely as an equal document.
            for ((_, got), (_, want)) in delivery.message.headers.iter().zip(&sent.headers) {
                if let (HeaderValue::Json(got), HeaderValue::Json(want)) = (got, want) {
                    prop_assert_eq!(got, want);
                }
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Config fuzz
// ---------------------------------------------------------------------------------------------

/// A config using every section: the embedded connection with a queue, an AMQP connection
/// with exchanges, queues and bindings, and a route with no plugins. No plugin directory.
const VALID_CONFIG: &str = r#"[server]
listen = "127.0.0.1:18089"
database = "sqlite::memory:"
plugin_dir = "/nonexistent/wharf-properties-plugins"
max_message_bytes = 1048576
shutdown_grace_ms = 500

[connections.local]
kind = "embedded"

[[connections.local.queues]]
name = "orders.in"
dead_letter = "orders.dead"
visibility_timeout_ms = 30000
max_deliveries = 5

[connections.rabbit]
kind = "amqp"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
urls = ["amqp://127.0.0.1:5673/%2f"]
heartbeat_s = 10
channels = 2
tls = { ca = "/nonexistent/ca.pem" }

[[connections.rabbit.exchanges]]
name = "events"
type = "topic"

[[connections.rabbit.queues]]
name = "billing"
type = "quorum"
dead_letter_exchange = ""
message_ttl_ms = 60000

[[connections.rabbit.bindings]]
exchange = "events"
queue = "billing"
key = "orders.#"

[[routes]]
name = "copy"
from = "local:orders.in"
through = []
to = "rabbit:billing"
concurrency = 4
retry = { max = 3, backoff_ms = 50, max_backoff_ms = 1000 }

[[routes]]
name = "back"
from = "rabbit:billing"
through = []
to = "local:orders.out"
dead_letter = "local:orders.dead"
"#;

/// Loads `text` as a config file.
fn load(dir: &tempfile::TempDir, text: &[u8]) -> Result<Config, wharf::config::ConfigError> {
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, text).expect("the temporary config is written");
    Config::load(Some(&path))
}

#[test]
fn the_valid_config_loads() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = load(&dir, VALID_CONFIG.as_bytes()).expect("the valid config loads");
    assert_eq!(config.routes.len(), 2);
    assert!(config.routes.iter().all(|r| r.through.is_empty()));
    assert!(config.connections.contains_key("local"));
    assert!(config.connections.contains_key("rabbit"));
    assert!(config.plugin_sources().expect("no plugin dir").is_empty());
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    DuplicateLine {
        line: usize,
    },
    DropLine {
        line: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
    Insert {
        at: usize,
        text: String,
    },
    /// The value of the `line`th `key = value` line becomes `value`.
    ReplaceValue {
        line: usize,
        value: String,
    },
}

fn mutation() -> BoxedStrategy<Mutation> {
    let at = any::<usize>();
    let snippets = prop_oneof![
        r"[^\n]{0,12}",
        select(vec![
            "[",
            "]",
            "[[routes]]\n",
            "\"",
            "=",
            "\n",
            "kind = \"kafka\"\n",
            "[server]\n",
            "through = [\"ghost\"]\n",
            "listen = 1\n",
            "= =",
            "\u{0}",
            "'''",
            "\"\"\"",
            "{",
            "inf",
            "nan",
            "-0",
            "99999999999999999999",
            "1979-05-27T07:32:00Z",
            "a.b.c = 1\n",
            "[connections.local]\n",
            "kind = \"amqp\"\n",
            "url = \"amqp://\"\n",
        ])
        .prop_map(String::from),
    ];
    prop_oneof![
        1 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => at.prop_map(|line| Mutation::DuplicateLine { line }),
        1 => at.prop_map(|line| Mutation::DropLine { line }),
        1 => (at, at).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        1 => (at, snippets).prop_map(|(at, text)| Mutation::Insert { at, text }),
        // Keeps the file parseable more often, so deserialisation and validation are reached.
        3 => (at, toml_value()).prop_map(|(line, value)| Mutation::ReplaceValue { line, value }),
    ]
    .boxed()
}

fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

fn apply(text: &mut Vec<u8>, mutation: &Mutation) {
    let pick = |n: usize, len: usize| if len == 0 { 0 } else { n % len };
    match mutation {
        Mutation::FlipBit { at, bit } if !text.is_empty() => {
            let at = pick(*at, text.len());
            text[at] ^= 1 << bit;
        }
        Mutation::SetByte { at, byte } if !text.is_empty() => {
            let at = pick(*at, text.len());
            text[at] = *byte;
        }
        Mutation::Truncate { at } => text.truncate(pick(*at, text.len() + 1)),
        Mutation::Insert { at, text: snippet } => {
            let at = pick(*at, text.len() + 1);
            text.splice(at..at, snippet.bytes());
        }
        Mutation::DuplicateLine { line } | Mutation::DropLine { line } => {
            let mut lines = lines(text);
            let i = pick(*line, lines.len());
            if matches!(mutation, Mutation::DuplicateLine { .. }) {
                let copy = lines[i].clone();
                lines.insert(i, copy);
            } else {
                lines.remove(i);
            }
            *text = lines.join(&b'\n');
        }
        Mutation::SwapLines { a, b } => {
            let mut lines = lines(text);
            let (a, b) = (pick(*a, lines.len()), pick(*b, lines.len()));
            lines.swap(a, b);
            *text = lines.join(&b'\n');
        }
        Mutation::ReplaceValue { line, value } => {
            let mut lines = lines(text);
            let assignments: Vec<(usize, usize)> = lines
                .iter()
                .enumerate()
                .filter_map(|(i, line)| {
                    let at = line.windows(3).position(|w| w == b" = ")?;
                    Some((i, at + 3))
                })
                .collect();
            if !assignments.is_empty() {
                let (i, at) = assignments[pick(*line, assignments.len())];
                lines[i].truncate(at);
                lines[i].extend_from_slice(value.as_bytes());
                *text = lines.join(&b'\n');
            }
        }
        _ => {}
    }
}

/// A TOML value: of the config's vocabulary, of every TOML type, broken, or nested deep.
fn toml_value() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec![
            "\"embedded\"",
            "\"amqp\"",
            "\"local:a\"",
            "\"rabbit:billing\"",
            "\"amqp://h\"",
            "\"/nonexistent\"",
            "[]",
            "[\"x\"]",
            "{}",
            "{ max = 1 }",
            "true",
            "0",
            "-1",
            "18446744073709551616",
            "1.5",
            "nan",
            "inf",
            "1979-05-27",
            "\"127.0.0.1:0\"",
            "'lit'",
            "\"\\u0000\"",
            "\"unterminated",
            "[1, \"mixed\"]",
        ])
        .prop_map(String::from),
        r#""[^"\\\n]{0,20}""#,
        any::<i64>().prop_map(|n| n.to_string()),
        // Deep nesting of arrays or inline tables.
        (1usize..200, any::<bool>()).prop_map(|(depth, arrays)| {
            if arrays {
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{ a = ".repeat(depth), " }".repeat(depth))
            }
        }),
    ]
    .boxed()
}

/// TOML-ish text from scratch: tables and keys of the config's vocabulary, values of every
/// TOML type, some broken, some nested deep.
fn tomlish() -> BoxedStrategy<String> {
    let key = prop_oneof![
        select(vec![
            "server",
            "listen",
            "database",
            "plugin_dir",
            "max_message_bytes",
            "connections",
            "local",
            "rabbit",
            "kind",
            "url",
            "urls",
            "queues",
            "exchanges",
            "bindings",
            "routes",
            "name",
            "from",
            "through",
            "to",
            "retry",
            "max",
            "concurrency",
            "dead_letter",
            "durable",
            "tls",
            "plugins",
            "path",
            "type",
            "\"quoted key\"",
            "a.b",
        ])
        .prop_map(String::from),
        "[a-z_]{1,8}",
    ];
    let value = toml_value();
    let line = prop_oneof![
        4 => (key.clone(), value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => vec(key.clone(), 1..4).prop_map(|ks| format!("[{}]", ks.join("."))),
        1 => vec(key, 1..3).prop_map(|ks| format!("[[{}]]", ks.join("."))),
        1 => r"[^\n]{0,30}",
    ];
    vec(line, 0..24).prop_map(|lines| lines.join("\n")).boxed()
}

/// Checks the shape of what `Config::load` says: a config that passes its own checks (and
/// always has `local`), or an error with a message.
fn check_load(result: Result<Config, wharf::config::ConfigError>) -> Result<(), TestCaseError> {
    match result {
        Ok(config) => {
            prop_assert!(config.connections.contains_key("local"));
            prop_assert!(config.validate().is_ok(), "a loaded config validates again");
        }
        Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "an error with no message"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_load_survives_mutations_of_a_valid_config(mutations in vec(mutation(), 1..5)) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut text = VALID_CONFIG.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut text, m);
        }
        check_load(load(&dir, &text))?;
    }

    #[test]
    fn config_load_survives_any_tomlish_text(text in tomlish()) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        check_load(load(&dir, text.as_bytes()))?;
    }
}

// ---------------------------------------------------------------------------------------------
// AMQP deliveries from other clients
// ---------------------------------------------------------------------------------------------

/// Any AMQP field value another client could send, nested tables and arrays included.
fn amqp_value() -> BoxedStrategy<lapin::types::AMQPValue> {
    use lapin::types::{AMQPValue, ByteArray, DecimalValue, LongString, ShortString};
    let leaf = prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any_float().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        any_text().prop_map(|s| AMQPValue::LongString(LongString::from(s))),
        "[ -~]{0,40}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        bytes(64).prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4)
                .prop_map(|items| { AMQPValue::FieldArray(lapin::types::FieldArray::from(items)) }),
            vec(("[a-z-]{1,12}", inner), 0..4)
                .prop_map(|fields| { AMQPValue::FieldTable(amqp_table(fields)) }),
        ]
    })
    .boxed()
}

fn amqp_table(fields: Vec<(String, lapin::types::AMQPValue)>) -> lapin::types::FieldTable {
    lapin::types::FieldTable::from(
        fields
            .into_iter()
            .map(|(k, v)| (lapin::types::ShortString::from(k), v))
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// Header names a delivery may carry, Wharf's own among them with values of any type (a
/// client that sets `x-wharf-repeated` to a number, `x-wharf-key` to text, ...).
fn amqp_header_name() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec![
            "x-wharf-topic",
            "x-wharf-key",
            "x-wharf-timestamp-ms",
            "x-wharf-repeated",
            "x-amqp-type",
            "x-delivery-count",
            "x-death",
            "a",
        ])
        .prop_map(String::from),
        "[a-z-]{1,20}",
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(512))]

    /// Whatever properties and headers another client sends, reading the delivery gives a
    /// message (never a panic), and that message can be sent on or refused with an error.
    #[test]
    fn any_delivery_from_another_client_reads_without_panic(
        routing_key in "[ -~]{0,40}",
        headers in vec((amqp_header_name(), amqp_value()), 0..8),
        message_id in option::of("[ -~]{0,40}"),
        expiration in option::of(any_text()),
        timestamp in option::of(any::<u64>()),
        priority in option::of(any::<u8>()),
        payload in bytes(64),
    ) {
        use lapin::types::ShortString;
        let mut props = lapin::BasicProperties::default().with_headers(amqp_table(headers));
        if let Some(id) = message_id {
            props = props.with_message_id(ShortString::from(id));
        }
        if let Some(expiration) = expiration.filter(|e| e.len() <= SHORT) {
            props = props.with_expiration(ShortString::from(expiration));
        }
        if let Some(timestamp) = timestamp {
            props = props.with_timestamp(timestamp);
        }
        if let Some(priority) = priority {
            props = props.with_priority(priority);
        }
        let msg = from_amqp(&routing_key, &props, payload.clone());
        prop_assert_eq!(&msg.payload, &payload);
        prop_assert!(!msg.id.is_empty(), "every message gets an id");
        match to_amqp(&msg, &routing_key) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // Its JSON form reads back too.
        let _ = Message::from_json(&msg.to_json());
    }
}
