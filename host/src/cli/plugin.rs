//! `wharf plugin check` and `wharf plugin run`, which need no host; the other plugin commands
//! go through a running host (`control.rs`).

use super::load::{inspect, load, load_with};
use super::project::{Case, Manifest};
use crate::message::Message;
use crate::runtime::{CallReport, LogLine, PluginSettings, Standalone};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Print what a plugin declares, or exactly why it is not a valid plugin.
    Check {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin on one message, with no broker, and print its outputs, logs and cost.
    Run(RunArgs),
    /// Check a plugin on messages, with no broker, for a plugin's own CI: runs it on each
    /// --input in turn and compares every output (a transformer's outputs, a handler's reply,
    /// what a daemon left on --expect-on) with the --expect given, in order; exits 1 with what
    /// differs. With no file, runs the tests of the plugin project in this folder.
    Test(TestArgs),
    /// Make a plugin project from a template (Rust, Python or JavaScript; a transformer,
    /// handler or daemon) that builds and passes its test as it is.
    New(super::project::NewArgs),
    /// Build the plugin project in this folder (or DIR), whatever its language, and check
    /// that what it made is the plugin its wharf-plugin.toml names.
    Build(super::project::BuildArgs),
    /// Upload, list, enable, disable, roll back, grant and delete, through a running host.
    #[command(flatten)]
    Host(super::control::PluginApiCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin's .wasm file.
    file: PathBuf,
    /// The message: a JSON object (`{"topic": "t", "payload": "hi"}`), a file holding one,
    /// or `-` for standard input.
    #[arg(long, conflicts_with = "payload")]
    input: Option<String>,
    /// Shorthand for a message with this text payload.
    #[arg(long)]
    payload: Option<String>,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Run the message this many times and report the cost of each call (a reusable
    /// plugin's later calls reuse its instance).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    repeat: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A daemon runs this long (seconds) against an embedded broker in memory, then is asked
    /// to stop.
    #[arg(long = "for", value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    run_for: u64,
    /// For a daemon: the `local:` queue the message of --input or --payload is put on before
    /// it starts.
    #[arg(long, value_name = "local:QUEUE")]
    queue: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin's .wasm file; without one (or with a folder), the tests in the
    /// wharf-plugin.toml of the plugin project in this folder (or that folder).
    file: Option<PathBuf>,
    /// An input message: a JSON object (`{"payload": "hi", "headers": {…}}`) or, otherwise,
    /// the payload as text (repeatable; run in order).
    #[arg(long)]
    input: Vec<String>,
    /// An expected output, in order over all inputs: a JSON object whose fields must match
    /// (only those given; a JSON `payload` is compared as JSON), or the payload as text
    /// (repeatable). None given: the plugin must output nothing (a filter).
    #[arg(long)]
    expect: Vec<String>,
    /// Expect each input to fail with this error instead (`Rejected`, `Retry`, `Trap`,
    /// `Deadline`, `MemoryLimit`).
    #[arg(long, conflicts_with = "expect")]
    expect_error: Option<String>,
    /// For a daemon: the `local:` queue the inputs are put on before it starts.
    #[arg(long, value_name = "local:QUEUE")]
    queue: Option<String>,
    /// For a daemon: the `local:` queue whose messages are compared with --expect.
    #[arg(long, value_name = "local:QUEUE")]
    expect_on: Option<String>,
    /// For a daemon: how long it runs (seconds).
    #[arg(long = "for", value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    run_for: u64,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// A message given on the command line: a JSON object in the message's JSON form, or text.
fn message_arg(text: &str) -> anyhow::Result<Message> {
    if text.trim_start().starts_with('{') {
        let doc: serde_json::Value =
            serde_json::from_str(text).with_context(|| format!("`{text}` is not JSON"))?;
        return Message::from_json(&doc).map_err(|e| anyhow::anyhow!("`{text}`: {e}"));
    }
    Ok(Message::new("", text.as_bytes().to_vec()))
}

/// Where `output` differs from `expected` (a JSON object's fields, or payload text).
fn differs(output: &Message, expected: &str) -> Option<String> {
    let actual = output.to_json();
    let wanted: serde_json::Value = if expected.trim_start().starts_with('{') {
        match serde_json::from_str(expected) {
            Ok(doc) => doc,
            Err(e) => return Some(format!("--expect `{expected}` is not JSON: {e}")),
        }
    } else {
        json!({ "payload": expected })
    };
    let serde_json::Value::Object(fields) = wanted else {
        return Some(format!("--expect `{expected}` is not an object"));
    };
    for (name, want) in fields {
        let got = actual
            .get(&name)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let same = match (name.as_str(), &want, &got) {
            // A JSON payload matches the payload parsed as JSON.
            (
                "payload",
                serde_json::Value::Object(_) | serde_json::Value::Array(_),
                serde_json::Value::String(text),
            ) => serde_json::from_str::<serde_json::Value>(text).is_ok_and(|parsed| parsed == want),
            _ => got == want,
        };
        if !same {
            return Some(format!("{name}: expected {want}, got {got}"));
        }
    }
    None
}

async fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let project = match &args.file {
        Some(file) if !file.is_dir() => None,
        dir => Some(dir.clone().unwrap_or_else(|| PathBuf::from("."))),
    };
    let Some(dir) = project else {
        let file = args.file.clone().expect("a file when not a project");
        if args.input.is_empty() {
            bail!(
                "give at least one --input (or run `wharf plugin test` in a plugin project to run its tests)"
            );
        }
        let case = Case {
            input: args.input.clone(),
            expect: args.expect.clone(),
            expect_error: args.expect_error.clone(),
            grants: None,
            config: BTreeMap::new(),
            queue: args.queue.clone(),
            expect_on: args.expect_on.clone(),
            for_secs: Some(args.run_for),
        };
        let outcome = run_case(&file, &case, args.sandbox.settings()).await?;
        return Ok(outcome.print(None));
    };
    if !args.input.is_empty() || !args.expect.is_empty() || args.expect_error.is_some() {
        bail!("--input, --expect and --expect-error go with a .wasm file, not a project");
    }
    let manifest = Manifest::read(&dir)?;
    let file = dir.join(&manifest.build.output);
    if !file.is_file() {
        bail!(
            "{} is not built yet: run `wharf plugin build` first",
            file.display()
        );
    }
    if manifest.tests.is_empty() {
        bail!("{} has no [[test]]", super::project::MANIFEST);
    }
    let wants = inspect(&file).await?.wants;
    let mut failed = false;
    for (i, case) in manifest.tests.iter().enumerate() {
        let mut settings = args.sandbox.settings();
        settings.grants = case.grants.clone().unwrap_or_else(|| wants.clone());
        settings.config.extend(case.config.clone());
        let outcome = run_case(&file, case, settings).await?;
        failed |= outcome.print(Some(i + 1)) != ExitCode::SUCCESS;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What one test case came to.
struct Outcome {
    inputs: usize,
    outputs: Vec<Message>,
    expected: usize,
    expect_error: Option<String>,
    failures: Vec<String>,
}

impl Outcome {
    fn print(&self, test: Option<usize>) -> ExitCode {
        let label = test.map_or(String::new(), |n| format!("test {n}: "));
        if self.failures.is_empty() {
            println!(
                "{label}ok: {} input(s), {}",
                self.inputs,
                match &self.expect_error {
                    Some(name) => format!("each failed with {name}"),
                    None => format!("{} output(s) as expected", self.outputs.len()),
                }
            );
            return ExitCode::SUCCESS;
        }
        for failure in &self.failures {
            println!("{label}FAILED {failure}");
        }
        for output in self.outputs.iter().skip(self.expected) {
            println!("  unexpected output: {}", output.to_json());
        }
        ExitCode::FAILURE
    }
}

/// Runs one case on the plugin in `file`: each input through a transformer or handler, or
/// a daemon for a while with the inputs on its queue; then compares what came out.
async fn run_case(file: &Path, case: &Case, settings: PluginSettings) -> anyhow::Result<Outcome> {
    let inputs = case
        .input
        .iter()
        .map(|text| message_arg(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let services = Arc::new(Standalone::default());
    let (plugin, _) = load_with(file, settings.clone(), services.clone()).await?;
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    if plugin.info().kind == crate::runtime::PluginKind::Daemon {
        let Some(expect_on) = &case.expect_on else {
            bail!(
                "`{}` is a daemon: say which queue to compare with --expect-on (expect_on in a manifest)",
                plugin.name()
            );
        };
        if !inputs.is_empty() && case.queue.is_none() {
            bail!(
                "`{}` is a daemon: say which queue its inputs go on with --queue (queue in a manifest)",
                plugin.name()
            );
        }
        let run_for = Duration::from_secs(case.for_secs.unwrap_or(2));
        let session = daemon_session(
            file,
            settings,
            run_for,
            case.queue.as_deref(),
            inputs.clone(),
        )
        .await?;
        if let Err(e) = &session.exit.result {
            failures.push(format!("the daemon failed ({}): {e}", e.exception_name()));
        }
        let wanted = crate::broker::Address::parse(expect_on)?;
        outputs = session
            .queues
            .into_iter()
            .find(|(queue, _)| *queue == wanted.address)
            .map(|(_, messages)| messages)
            .unwrap_or_default();
    } else {
        for (i, input) in inputs.iter().enumerate() {
            let report = match plugin.info().kind {
                crate::runtime::PluginKind::Transformer => plugin.transform(input).await,
                _ => plugin
                    .handle(input)
                    .await
                    .map(|reply| reply.into_iter().collect()),
            };
            if let Err(e) = services.kv_apply(report.kv_writes.clone()).await {
                bail!("applying the call's kv writes: {e}");
            }
            match (report.result, &case.expect_error) {
                (Ok(out), None) => outputs.extend(out),
                (Ok(out), Some(name)) => failures.push(format!(
                    "input {}: expected the error {name}, got {} output(s)",
                    i + 1,
                    out.len()
                )),
                (Err(e), Some(name)) if e.exception_name().eq_ignore_ascii_case(name) => {}
                (Err(e), _) => failures.push(format!(
                    "input {}: error ({}): {e}",
                    i + 1,
                    e.exception_name()
                )),
            }
        }
    }
    if case.expect_error.is_none() {
        if outputs.len() != case.expect.len() {
            failures.push(format!(
                "expected {} output(s), got {}",
                case.expect.len(),
                outputs.len()
            ));
        }
        for (i, (output, expected)) in outputs.iter().zip(&case.expect).enumerate() {
            if let Some(difference) = differs(output, expected) {
                failures.push(format!("output {}: {difference}", i + 1));
            }
        }
    }
    Ok(Outcome {
        inputs: inputs.len(),
        outputs,
        expected: case.expect.len(),
        expect_error: case.expect_error.clone(),
        failures,
    })
}

/// What a plugin run on its own is given: its config, grants and limits.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// A config value for the plugin, KEY=VALUE (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,
    /// A grant such as publish:local:out.* or http:https://api.example.com (repeatable).
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mb: usize,
    /// CPU time limit per call in milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Wall-clock limit per call in milliseconds, waits in host calls included (default:
    /// ten times --timeout-ms).
    #[arg(long)]
    wall_ms: Option<u64>,
    /// The most one call may hand the host, in MiB: results, publications, requests, kv
    /// writes.
    #[arg(long, default_value_t = 16)]
    output_mb: usize,
}

impl SandboxArgs {
    fn settings(&self) -> PluginSettings {
        PluginSettings {
            memory_bytes: self.memory_mb * 1024 * 1024,
            cpu_limit: Duration::from_millis(self.timeout_ms),
            wall_limit: self.wall_ms.map(Duration::from_millis),
            max_output_bytes: self.output_mb.saturating_mul(1024 * 1024),
            config: self.config.iter().cloned().collect::<BTreeMap<_, _>>(),
            grants: self.grants.clone(),
            ..PluginSettings::default()
        }
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

pub async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check { file, json } => check(&file, json).await,
        PluginCommand::Run(args) => run_once(args).await,
        PluginCommand::Test(args) => test(args).await,
        PluginCommand::New(args) => super::project::new(args),
        PluginCommand::Build(args) => super::project::build(args).await,
        PluginCommand::Host(command) => super::control::plugin(command).await,
    }
}

async fn check(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let (plugin, _) = load(file, PluginSettings::default()).await?;
    let info = plugin.info();
    if as_json {
        println!("{}", serde_json::to_string_pretty(info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} {}", info.name, info.version);
    println!("  kind:        {}", info.kind.as_str());
    println!("  contract:    {}", info.contract);
    if !info.description.is_empty() {
        println!("  description: {}", info.description);
    }
    let reuse = match (info.kind, info.reusable) {
        (crate::runtime::PluginKind::Daemon, _) => "not applicable (a daemon runs once)",
        (_, true) => "yes (instances may be reused across messages)",
        (_, false) => "no (a fresh instance per message)",
    };
    println!("  reusable:    {reuse}");
    if info.wants.is_empty() {
        println!("  wants:       nothing");
    } else {
        println!("  wants:       {}", info.wants.join(", "));
    }
    println!(
        "  file:        {} bytes, sha256 {}",
        info.size_bytes, info.sha256
    );
    Ok(ExitCode::SUCCESS)
}

fn read_input(args: &RunArgs) -> anyhow::Result<Message> {
    if let Some(payload) = &args.payload {
        return Ok(Message::new("", payload.as_bytes().to_vec()));
    }
    let Some(input) = &args.input else {
        bail!("give the message with --input JSON-or-FILE or --payload TEXT");
    };
    let text = if input == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else if input.trim_start().starts_with('{') {
        input.clone()
    } else {
        std::fs::read_to_string(input).with_context(|| {
            format!("--input `{input}` is neither a JSON object nor a readable file")
        })?
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).context("--input is not valid JSON")?;
    Message::from_json(&doc).context("--input is not a message")
}

async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let kind = load(&args.file, PluginSettings::default())
        .await?
        .0
        .info()
        .kind;
    if kind == crate::runtime::PluginKind::Daemon {
        return run_daemon(args).await;
    }
    let input = read_input(&args)?;
    let settings = args.sandbox.settings();
    // kv state lives as long as the run: a call's writes apply when it succeeds, so the
    // calls of --repeat see those before them.
    let services = Arc::new(Standalone::default());
    let (plugin, _) = load_with(&args.file, settings, services.clone()).await?;
    let mut failed = false;
    for call in 1..=args.repeat {
        let report = match plugin.info().kind {
            crate::runtime::PluginKind::Transformer => plugin.transform(&input).await,
            crate::runtime::PluginKind::Handler => plugin
                .handle(&input)
                .await
                .map(|reply| reply.into_iter().collect()),
            crate::runtime::PluginKind::Daemon => unreachable!("daemons run in run_daemon"),
        };
        failed |= report.result.is_err();
        if let Err(e) = services.kv_apply(report.kv_writes.clone()).await {
            bail!("applying the call's kv writes: {e}");
        }
        // With --repeat, only the first call's outputs and logs are printed in full.
        if args.json {
            println!("{}", serde_json::to_string(&report_json(&report, call))?);
        } else if call == 1 {
            print_report(&report);
        } else {
            print_cost(call, &report);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs a daemon for `--for` seconds against an embedded broker `local` in memory, then
/// prints how it ended and every message left on the broker's queues.
async fn run_daemon(args: RunArgs) -> anyhow::Result<ExitCode> {
    let inputs = if args.input.is_some() || args.payload.is_some() {
        vec![read_input(&args)?]
    } else {
        Vec::new()
    };
    let DaemonSession { exit, queues } = daemon_session(
        &args.file,
        args.sandbox.settings(),
        Duration::from_secs(args.run_for),
        args.queue.as_deref(),
        inputs,
    )
    .await?;
    let failed = exit.result.is_err();
    if args.json {
        let report = json!({
            "error": exit.result.as_ref().err().map(|e| json!({ "name": e.exception_name(), "message": e.to_string() })),
            "ran_ms": exit.ran.as_millis() as u64,
            "cpu_us": exit.cpu.as_micros() as u64,
            "returned": exit.returned,
            "queues": queues.iter().map(|(queue, messages)| json!({
                "queue": format!("local:{queue}"),
                "messages": messages.iter().map(Message::to_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string(&report)?);
    } else {
        match &exit.result {
            Ok(()) => println!(
                "ran {:.1} s (guest cpu {:.1} ms) and stopped",
                exit.ran.as_secs_f64(),
                exit.cpu.as_secs_f64() * 1e3
            ),
            Err(e) => println!(
                "failed after {:.1} s ({}): {e}",
                exit.ran.as_secs_f64(),
                e.exception_name()
            ),
        }
        if exit.returned > 0 {
            println!(
                "{} message(s) it took and had not settled went back",
                exit.returned
            );
        }
        if queues.is_empty() {
            println!("no messages left on any queue");
        }
        for (queue, messages) in &queues {
            println!("local:{queue} ({}):", messages.len());
            for message in messages {
                println!("  {}", message.to_json());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How a daemon run by [`daemon_session`] ended, and what it left on each queue.
struct DaemonSession {
    exit: crate::runtime::DaemonExit,
    queues: Vec<(String, Vec<Message>)>,
}

/// Runs the daemon in `file` for `run_for` against an embedded broker `local` in memory, with
/// `inputs` on `queue` first, then asks it to stop.
async fn daemon_session(
    file: &Path,
    settings: PluginSettings,
    run_for: Duration,
    queue: Option<&str>,
    inputs: Vec<Message>,
) -> anyhow::Result<DaemonSession> {
    let store = crate::store::Store::open("sqlite::memory:").await?;
    let connections = crate::broker::Connections::default();
    let local = crate::config::ConnectionConfig::embedded()
        .open(
            "local",
            &crate::broker::registry::Opening {
                store: &store,
                routes: &[],
                host: "plugin-test",
            },
        )
        .await
        .map_err(anyhow::Error::msg)?;
    connections.insert("local", local);
    if !inputs.is_empty() {
        let Some(queue) = queue else {
            bail!("give --queue local:QUEUE: a daemon takes its input from a queue");
        };
        let at = crate::broker::Address::parse(queue)?;
        if at.connection != "local" {
            bail!("--queue must be on `local`, the embedded broker this run has");
        }
        for input in inputs {
            connections.send(&at, input).await?;
        }
    }
    let services = crate::host::offline_services(store, connections.clone(), Default::default());
    let (plugin, _) = load_with(file, settings, services.clone()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(run_for).await;
        stop.send_replace(true);
    });
    let exit = plugin
        .run_daemon(plugin.name(), stopped, Duration::from_secs(2))
        .await;
    timer.abort();
    // The run is over: the events patterns it took from are unbound.
    if let Err(error) = services.release_sources(plugin.name()).await {
        eprintln!("warning: {error}");
    }
    let broker = connections
        .embedded("local")
        .context("the embedded broker is gone")?;
    let mut queues = Vec::new();
    for queue in broker.queues().await? {
        let messages = broker.peek(&queue, 100, 1 << 20).await?;
        if !messages.is_empty() {
            queues.push((queue, messages));
        }
    }
    Ok(DaemonSession { exit, queues })
}

fn report_json(report: &CallReport<Vec<Message>>, call: u32) -> serde_json::Value {
    json!({
        "call": call,
        "outputs": report.result.as_ref().map(|out| out.iter().map(Message::to_json).collect::<Vec<_>>()).ok(),
        "error": report.result.as_ref().err().map(|e| json!({ "name": e.exception_name(), "message": e.to_string() })),
        "published": report.published.iter().map(|p| json!({ "destination": p.destination, "message": p.message.to_json() })).collect::<Vec<_>>(),
        "logs": report.logs,
        "dropped_logs": report.dropped_logs,
        "cost": {
            "wall_us": report.cost.wall.as_micros() as u64,
            "cpu_us": report.cost.cpu.as_micros() as u64,
            "instantiate_us": report.cost.instantiate.as_micros() as u64,
            "fresh_instance": report.cost.fresh_instance,
            "memory_bytes": report.cost.memory_bytes,
        },
    })
}

fn print_report(report: &CallReport<Vec<Message>>) {
    match &report.result {
        Ok(outputs) => {
            println!("outputs: {}", outputs.len());
            for output in outputs {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output.to_json()).unwrap_or_default()
                );
            }
        }
        Err(e) => println!("error ({}): {e}", e.exception_name()),
    }
    for p in &report.published {
        println!("published to {}: {}", p.destination, p.message.to_json());
    }
    if !report.logs.is_empty() || report.dropped_logs > 0 {
        println!("logs:");
        for LogLine {
            level,
            source,
            text,
        } in &report.logs
        {
            println!("  [{level:?} {source:?}] {text}");
        }
        if report.dropped_logs > 0 {
            println!("  ({} more lines not kept)", report.dropped_logs);
        }
    }
    print_cost(1, report);
}

fn print_cost<T>(call: u32, report: &CallReport<T>) {
    let cost = &report.cost;
    println!(
        "cost of call {call}: wall {:.1} µs, guest cpu {:.1} µs, {}, memory {} KiB",
        cost.wall.as_secs_f64() * 1e6,
        cost.cpu.as_secs_f64() * 1e6,
        if cost.fresh_instance {
            format!(
                "fresh instance (instantiate {:.1} µs)",
                cost.instantiate.as_secs_f64() * 1e6
            )
        } else {
            "reused instance".to_owned()
        },
        cost.memory_bytes / 1024,
    );
}
