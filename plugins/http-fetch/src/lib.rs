//! Outbound HTTP from a Rust handler: each request's payload is a path; the plugin fetches
//! config `url` + that path and replies with the answer's body, its status in header
//! `http_status`. With config `token` (seal it: it is a secret) the request carries
//! `Authorization: Bearer {token}`. A payload that starts with `{` is sent as a JSON `POST`.
//!
//! The host sends only to origins the plugin's `http:` grants name: grant
//! `http:https://api.example.com` for `url = "https://api.example.com/"`. A `5xx` answer is
//! retried; a refused or failed request too (the service may come back).
use wharf_sdk::{Failure, Info, Message, Value, config, handler::Guest, http};

struct Fetch;

impl Guest for Fetch {
    fn describe() -> Info {
        Info::handler("http-fetch", env!("CARGO_PKG_VERSION"))
            .with_description("Fetches config url + the request's payload and replies with it")
            .reusable()
    }

    fn handle(msg: Message) -> Result<Option<Message>, Failure> {
        let base = config::require("url")?;
        let path = msg
            .text()
            .map_err(|_| Failure::Reject("the payload is not a UTF-8 path".into()))?;
        let mut request = if path.starts_with('{') {
            http::Request::post(&base, path.as_bytes()).header("content-type", "application/json")
        } else {
            http::Request::get(&format!("{base}{path}"))
        };
        if let Some(token) = config::get("token") {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let answer = request.send()?;
        if answer.status >= 500 {
            // Named in the dead letter's exception_name (`ServerError`), not just `Retry`.
            return Err(
                Failure::Retry(format!("the service answered {}", answer.status))
                    .named("ServerError", "http-fetch"),
            );
        }
        let mut reply = msg.reply(answer.body);
        reply.set_header("http_status", Value::Int(answer.status.into()));
        Ok(Some(reply))
    }
}

wharf_sdk::export_handler!(Fetch);
