//! A well-formed component that implements some other world: the host must refuse it as
//! "not a Wharf plugin" rather than fail somewhere later.
wit_bindgen::generate!({ path: "wit", world: "gadget" });

struct Gadget;

impl Guest for Gadget {
    fn frob(input: String) -> String {
        input.chars().rev().collect()
    }
}

export!(Gadget);
