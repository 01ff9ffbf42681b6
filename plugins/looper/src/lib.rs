//! Test plugin: spins forever without calling the host, to prove the CPU deadline stops it.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Looper;

impl Guest for Looper {
    fn describe() -> Info {
        Info::transformer("looper", env!("CARGO_PKG_VERSION")).with_description("Loops forever")
    }

    fn transform(msg: Message) -> Result<Vec<Message>, Failure> {
        let mut x: u64 = msg.payload.len() as u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

wharf_sdk::export_transformer!(Looper);
