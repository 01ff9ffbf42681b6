//! Built against `wharf:plugin@0.2.0`: the host (serving 0.1.x) must refuse it by version.
wit_bindgen::generate!({ path: "wit", world: "transformer" });

struct Future;

impl Guest for Future {
    fn describe() -> String {
        wharf::plugin::log::log("describing");
        "future".into()
    }

    fn transform(payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

export!(Future);
