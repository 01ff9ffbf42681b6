//! Test plugin: tries what a sandboxed plugin must not be able to do (read a file, list the
//! root directory, open a TCP socket, resolve a name, read the environment) and reports each
//! outcome as a header `x-<attempt>` = `allowed: …` or `denied: …`. It never panics, so the
//! test sees every attempt.
use std::net::{TcpStream, ToSocketAddrs};
use wharf_sdk::{Failure, Info, Message, Value, transformer::Guest};

struct Prying;

fn outcome<T, E: std::fmt::Display>(r: Result<T, E>, show: impl FnOnce(T) -> String) -> Value {
    Value::Text(match r {
        Ok(v) => format!("allowed: {}", show(v)),
        Err(e) => format!("denied: {e}"),
    })
}

impl Guest for Prying {
    fn describe() -> Info {
        Info::transformer("prying", env!("CARGO_PKG_VERSION"))
            .with_description("Tries files, sockets and the environment")
    }

    fn transform(mut msg: Message) -> Result<Vec<Message>, Failure> {
        let file = std::fs::read_to_string("/etc/passwd");
        msg.set_header(
            "x-read-file",
            outcome(file, |s| format!("{} bytes", s.len())),
        );

        let dir = std::fs::read_dir("/");
        msg.set_header(
            "x-list-dir",
            outcome(dir, |d| format!("{} entries", d.count())),
        );

        let socket = TcpStream::connect("127.0.0.1:5432");
        msg.set_header(
            "x-connect",
            outcome(socket, |s| format!("{:?}", s.peer_addr())),
        );

        let lookup = "localhost:80".to_socket_addrs();
        msg.set_header(
            "x-resolve",
            outcome(lookup, |a| format!("{:?}", a.collect::<Vec<_>>())),
        );

        let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let env = if vars.is_empty() {
            Err("no variables")
        } else {
            Ok(vars)
        };
        msg.set_header("x-env", outcome(env, |v| v.join(",")));

        Ok(vec![msg])
    }
}

wharf_sdk::export_transformer!(Prying);
