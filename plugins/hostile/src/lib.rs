//! Test plugin. Everything it says of itself is an attempt to run script in an admin's
//! browser: its version (no spaces, so the host takes it) breaks out of a JavaScript string
//! inside an HTML attribute, its description and the grants it asks for carry markup. The UI
//! must show them as text. It passes messages through unchanged.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Hostile;

impl Guest for Hostile {
    fn describe() -> Info {
        Info::transformer("hostile", "1'-alert(1)-'\"><svg/onload=alert(2)>")
            .with_description("<img src=x onerror=alert(3)> '-alert(4)-'")
            .wants("publish:local:x'-alert(5)-'<script>alert(6)</script>")
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(Hostile);
