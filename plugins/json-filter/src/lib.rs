//! Keeps the messages whose JSON payload matches a condition and drops the rest.
//!
//! Config:
//! - `field`: where to look, as a JSON pointer (`/order/status`) or a dotted path
//!   (`order.status`; array elements by index, `items.0.sku`);
//! - `op`: `eq` (default), `ne`, `gt`, `ge`, `lt`, `le`, `contains`, `exists`, `missing`;
//! - `value`: what to compare with, read as JSON when it parses (`42`, `true`, `"x"`) and as a
//!   string otherwise (`shipped`). Not needed for `exists` and `missing`.
//!
//! A payload that is not JSON is rejected (dead-lettered), not silently dropped: a filter that
//! cannot read its input should say so. A config that makes no sense is rejected the same way.
use serde_json::Value as Json;
use wharf_sdk::{Failure, Info, Message, config, transformer::Guest};

struct JsonFilter;

#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    Exists,
    Missing,
}

impl Op {
    fn parse(s: &str) -> Result<Op, Failure> {
        Ok(match s {
            "eq" | "==" => Op::Eq,
            "ne" | "!=" => Op::Ne,
            "gt" | ">" => Op::Gt,
            "ge" | ">=" => Op::Ge,
            "lt" | "<" => Op::Lt,
            "le" | "<=" => Op::Le,
            "contains" => Op::Contains,
            "exists" => Op::Exists,
            "missing" => Op::Missing,
            other => {
                return Err(Failure::Reject(format!(
                    "config `op` = `{other}` is not one of eq, ne, gt, ge, lt, le, contains, exists, missing"
                )));
            }
        })
    }
}

fn pointer(field: &str) -> String {
    if field.starts_with('/') || field.is_empty() {
        field.to_owned()
    } else {
        field
            .split('.')
            .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
            .collect()
    }
}

fn compare(found: &Json, op: Op, wanted: &Json) -> bool {
    use std::cmp::Ordering::*;
    let ordering = match (found, wanted) {
        (Json::Number(a), Json::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Json::String(a), Json::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        Op::Eq => found == wanted,
        Op::Ne => found != wanted,
        Op::Gt => ordering == Some(Greater),
        Op::Ge => matches!(ordering, Some(Greater | Equal)),
        Op::Lt => ordering == Some(Less),
        Op::Le => matches!(ordering, Some(Less | Equal)),
        Op::Contains => match (found, wanted) {
            (Json::String(s), Json::String(w)) => s.contains(w.as_str()),
            (Json::Array(items), w) => items.contains(w),
            _ => false,
        },
        Op::Exists | Op::Missing => unreachable!("handled before comparing"),
    }
}

impl Guest for JsonFilter {
    fn describe() -> Info {
        Info::transformer("json-filter", env!("CARGO_PKG_VERSION"))
            .with_description(
                "Keeps messages whose JSON field matches `field`, `op` and `value` from its config",
            )
            .reusable()
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        let field = config::require("field")?;
        let op = Op::parse(config::get("op").as_deref().unwrap_or("eq"))?;
        let doc: Json = serde_json::from_slice(&msg.payload)
            .map_err(|e| Failure::Reject(format!("payload is not JSON: {e}")))?;
        let found = doc.pointer(&pointer(&field));
        let keep = match op {
            Op::Exists => found.is_some(),
            Op::Missing => found.is_none(),
            _ => {
                let raw = config::require("value")?;
                let wanted = serde_json::from_str(&raw).unwrap_or(Json::String(raw));
                found.is_some_and(|found| compare(found, op, &wanted))
            }
        };
        Ok(if keep { vec![msg] } else { Vec::new() })
    }
}

wharf_sdk::export_transformer!(JsonFilter);
