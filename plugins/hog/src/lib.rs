//! Test plugin: allocates (and touches) 1 MiB after 1 MiB until the host refuses to grow its
//! memory, to prove the memory limit holds and is reported as such.
use wharf_sdk::{Failure, Info, Message, transformer::Guest};

struct Hog;

impl Guest for Hog {
    fn describe() -> Info {
        Info::transformer("hog", env!("CARGO_PKG_VERSION"))
            .with_description("Allocates without bound")
    }

    fn transform(_msg: Message) -> Result<Vec<Message>, Failure> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

wharf_sdk::export_transformer!(Hog);
