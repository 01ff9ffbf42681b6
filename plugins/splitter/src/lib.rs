//! Test plugin: makes copies of its input, as many as its `x-copies` header says (1 without
//! it), each marked `x-copy`. An `x-output-topic` header becomes every copy's topic. Used to
//! prove that one input cannot make unbounded work, and that an output no transport takes is
//! dead-lettered rather than retried.
use wharf_sdk::{Failure, Info, Message, Value, transformer::Guest};

struct Splitter;

impl Guest for Splitter {
    fn describe() -> Info {
        Info::transformer("splitter", env!("CARGO_PKG_VERSION"))
            .with_description("Makes x-copies copies of its input")
            .reusable()
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        let copies: usize = match msg.header_text("x-copies") {
            Some(text) => text
                .parse()
                .map_err(|_| Failure::Reject(format!("x-copies `{text}` is not a number")))?,
            None => 1,
        };
        let topic = msg.header_text("x-output-topic").map(str::to_owned);
        Ok((0..copies)
            .map(|i| {
                let mut copy = msg.clone();
                copy.set_header("x-copy", Value::Int(i as i64));
                if let Some(topic) = &topic {
                    copy.topic = topic.clone();
                }
                copy
            })
            .collect())
    }
}

wharf_sdk::export_transformer!(Splitter);
