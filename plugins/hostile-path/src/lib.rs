//! Test plugin. Another version of `hostile`, whose version climbs out of the path it is put
//! in: a form whose action is `/plugins/hostile/versions/{version}/disable` would, with the
//! slashes left as they are, post to `/users/bob/disable`. The UI must keep it one segment.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct HostilePath;

impl Guest for HostilePath {
    fn describe() -> Info {
        Info::transformer("hostile", "../../../users/bob").with_description("climbs out of a path")
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(HostilePath);
