//! The command line: `clap` definitions and one file per command group.

mod access;
mod api;
mod connection;
mod control;
mod daemon;
mod events;
mod load;
mod outbox;
mod plugin;
mod project;
mod queue;
mod route;
mod schema;
mod secret;
mod serve;
mod subscription;
mod unit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Wharf: a host for WebAssembly message handlers.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: routes, connections and the HTTP API, until SIGTERM or Ctrl-C.
    Serve {
        /// The configuration file (wharf.toml); without one, the embedded defaults.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Publish one message to CONNECTION:ADDRESS through a running host.
    Publish(queue::PublishArgs),
    /// Take messages from CONNECTION:ADDRESS through a running host and print them.
    Consume(queue::ConsumeArgs),
    /// Settle what `consume --lease` took: ack, nack or extend a lease, or list them.
    #[command(subcommand)]
    Lease(queue::LeaseCommand),
    /// Send a request to CONNECTION:ADDRESS through a running host and print its reply.
    Rpc(queue::RpcArgs),
    /// The outbox's backlog, and its messages refused for good (list, retry, delete).
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Queue statistics and purge, through a running host.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Show or declare the AMQP exchanges, queues and bindings of the configuration.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Check and try plugin files; install, list, enable, disable, roll back and grant
    /// plugins on a running host.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// What runs on a host: connections and units, with their state and last error.
    Status(control::StatusArgs),
    /// Create, change, stop, start, restart, delete and list routes on a running host.
    #[command(subcommand)]
    Route(unit::UnitCommand<route::RouteSpec>),
    /// Publish a model event (routing key `{Model}.{event}`) through a running host.
    Event(events::EventArgs),
    /// Create, change, stop, start, restart, delete and list subscriptions to events on a
    /// running host.
    #[command(subcommand)]
    Subscription(unit::UnitCommand<subscription::SubscriptionSpec>),
    /// Create, change, stop, start, restart, delete and list daemons on a running host.
    #[command(subcommand)]
    Daemon(unit::UnitCommand<daemon::DaemonSpec>),
    /// Process every message outstanding on the routes and subscriptions given (none: every
    /// one of the host), then print how many were processed (for cron).
    Drain(events::DrainArgs),
    /// Add, change, test, remove and list connections on a running host.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Add, list and remove the users of the API, and set their passwords.
    #[command(subcommand)]
    User(access::UserCommand),
    /// Create, list and revoke API tokens for services.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Who changed what on a running host, and when (admin).
    Audit(control::AuditArgs),
    /// The key that seals secrets in the database: seal them again after a rotation.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
}

/// Parses the process's arguments, runs the command and reports its error, if any.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::run(config).await,
        Command::Publish(args) => queue::publish(args).await,
        Command::Consume(args) => queue::consume(args).await,
        Command::Lease(command) => queue::lease(command).await,
        Command::Queue(command) => queue::queue(command).await,
        Command::Outbox(command) => outbox::run(command).await,
        Command::Rpc(args) => queue::rpc(args).await,
        Command::Schema(command) => schema::run(command).await,
        Command::Plugin(command) => plugin::run(command).await,
        Command::Status(args) => control::status(args).await,
        Command::Route(command) => unit::run(command).await,
        Command::Event(args) => events::event(args).await,
        Command::Subscription(command) => unit::run(command).await,
        Command::Drain(args) => events::drain(args).await,
        Command::Daemon(command) => unit::run(command).await,
        Command::Connection(command) => connection::connection(command).await,
        Command::User(command) => access::user(command).await,
        Command::Token(command) => access::token(command).await,
        Command::Audit(args) => control::audit(args).await,
        Command::Secret(command) => secret::run(command).await,
    }
}

fn init_tracing() {
    // Plugin output is printed by the commands that run plugins; by default the log shows
    // only the host's warnings. RUST_LOG overrides (e.g. RUST_LOG=wharf=debug).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let serving = std::env::args().nth(1).as_deref() == Some("serve");
        // `serve` logs what it does; the other commands print their results and log only
        // the host's warnings (plugin output is part of `plugin run`'s report).
        // lapin logs every channel the broker closes as an error, including the expected
        // NOT_FOUND of a passive declare; Wharf logs what matters of those itself.
        tracing_subscriber::EnvFilter::new(if serving {
            "info,lapin=off"
        } else {
            "warn,wharf::plugin=off,lapin=off"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod definitions {
    /// Every command's arguments are well formed (clap checks this only when a command is
    /// run in a debug build; two arguments of one command named `config` went unnoticed).
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
