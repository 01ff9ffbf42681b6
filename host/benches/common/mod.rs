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

/// A run's figures: messages a second, and this process's CPU time per message.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub rate: f64,
    pub cpu_us: f64,
}

/// Rounds of a bare client and of Wharf doing the same work: prints each round's figures and,
/// at the end, Wharf's over the bare client's.
#[allow(dead_code)] // not every benchmark compares with a bare client
pub struct Comparison {
    bare: &'static str,
    rounds: usize,
    bare_total: (f64, f64),
    wharf_total: (f64, f64),
}

#[allow(dead_code)]
impl Comparison {
    /// `bare` names the bare client's run (`bare lapin, native uppercase`).
    pub fn new(bare: &'static str) -> Comparison {
        Comparison {
            bare,
            rounds: 0,
            bare_total: (0.0, 0.0),
            wharf_total: (0.0, 0.0),
        }
    }

    pub fn round(&mut self, bare: Figures, wharf: Figures) {
        self.rounds += 1;
        let round = self.rounds;
        for (name, figures) in [(self.bare, bare), ("wharf route, uppercase plugin", wharf)] {
            println!(
                "round {round}: {name:<36} {:>7.0} msg/s   {:>6.1} µs CPU/msg",
                figures.rate, figures.cpu_us
            );
        }
        self.bare_total = (
            self.bare_total.0 + bare.rate,
            self.bare_total.1 + bare.cpu_us,
        );
        self.wharf_total = (
            self.wharf_total.0 + wharf.rate,
            self.wharf_total.1 + wharf.cpu_us,
        );
    }

    pub fn finish(self) {
        println!(
            "wharf/bare over {} rounds: throughput {:.2}, CPU per message {:.2}",
            self.rounds,
            self.wharf_total.0 / self.bare_total.0,
            self.wharf_total.1 / self.bare_total.1
        );
    }
}
