//! What more than one benchmark needs.

#[allow(dead_code)] // not every benchmark uses RabbitMQ
pub mod amqp;

use std::time::Duration;

/// The 256-byte JSON payload the plugin benchmarks upper-case.
#[allow(dead_code)] // not every benchmark calls a plugin
pub fn payload() -> Vec<u8> {
    let head = r#"{"order":"A-1042","customer":"ada lovelace","note":""#;
    let tail = r#""}"#;
    let padding = "widget ".repeat(40);
    let doc = format!("{head}{}{tail}", &padding[..256 - head.len() - tail.len()]);
    assert_eq!(doc.len(), 256);
    doc.into_bytes()
}

/// User + system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// A host's configuration for a benchmark: SQLite file `db` in `dir`, the listener on a free
/// port, the example plugins, and no routes (the benchmark adds its own).
#[allow(dead_code)] // not every benchmark starts a host
pub fn host_config(dir: &std::path::Path, db: &str) -> wharf::config::Config {
    let mut config = wharf::config::Config::default();
    config.routes.clear();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = format!("sqlite://{}/{db}", dir.display());
    config.server.plugin_dir =
        Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    config
}
