//! Bindings generated from `wit/`, one module per world.
//!
//! The transformer world is generated first and owns the shared interfaces (`types`, `log`,
//! `config`); the handler and daemon worlds reuse them through `with`, so a `Message` is the same
//! Rust type whichever world a plugin implements. Each world's component-type section is linked
//! only by its own `export_*!` macro, so a transformer never declares a handler's imports.

/// The transformer world: `describe` and `transform`.
#[allow(missing_docs)]
pub mod transformer {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wharf:plugin/transformer",
        pub_export_macro: true,
        export_macro_name: "export_transformer",
        default_bindings_module: "::wharf_sdk::transformer",
        runtime_path: "::wharf_sdk::__private::wit_bindgen::rt",
        disable_custom_section_link_helpers: true,
        additional_derives: [PartialEq, Clone],
    });
}

/// The handler world: `describe` and `handle`, with the `host` interface.
#[allow(missing_docs)]
pub mod handler {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wharf:plugin/handler",
        pub_export_macro: true,
        export_macro_name: "export_handler",
        default_bindings_module: "::wharf_sdk::handler",
        runtime_path: "::wharf_sdk::__private::wit_bindgen::rt",
        disable_custom_section_link_helpers: true,
        with: {
            "wharf:plugin/types@0.1.3": crate::transformer::wharf::plugin::types,
            "wharf:plugin/log@0.1.3": crate::transformer::wharf::plugin::log,
            "wharf:plugin/config@0.1.3": crate::transformer::wharf::plugin::config,
            "wharf:plugin/exception@0.1.3": crate::transformer::wharf::plugin::exception,
            "wharf:plugin/host@0.1.3": generate,
            "wasi:http/types@0.2.12": generate,
            "wasi:http/outgoing-handler@0.2.12": generate,
            "wasi:io/poll@0.2.12": generate,
            "wasi:io/error@0.2.12": generate,
            "wasi:io/streams@0.2.12": generate,
            "wasi:clocks/monotonic-clock@0.2.12": generate,
        },
    });
}

/// The daemon world: `describe` and `run`, with `host` and `daemon-host`.
#[allow(missing_docs)]
pub mod daemon {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wharf:plugin/daemon",
        pub_export_macro: true,
        export_macro_name: "export_daemon",
        default_bindings_module: "::wharf_sdk::daemon",
        runtime_path: "::wharf_sdk::__private::wit_bindgen::rt",
        disable_custom_section_link_helpers: true,
        with: {
            "wharf:plugin/types@0.1.3": crate::transformer::wharf::plugin::types,
            "wharf:plugin/log@0.1.3": crate::transformer::wharf::plugin::log,
            "wharf:plugin/config@0.1.3": crate::transformer::wharf::plugin::config,
            "wharf:plugin/exception@0.1.3": crate::transformer::wharf::plugin::exception,
            "wharf:plugin/host@0.1.3": crate::handler::wharf::plugin::host,
            "wharf:plugin/daemon-host@0.1.3": generate,
            "wasi:http/types@0.2.12": crate::handler::wasi::http::types,
            "wasi:http/outgoing-handler@0.2.12": crate::handler::wasi::http::outgoing_handler,
            "wasi:io/poll@0.2.12": crate::handler::wasi::io::poll,
            "wasi:io/error@0.2.12": crate::handler::wasi::io::error,
            "wasi:io/streams@0.2.12": crate::handler::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": crate::handler::wasi::clocks::monotonic_clock,
        },
    });
}
