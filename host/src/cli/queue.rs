//! `wharf publish`, `wharf consume` and `wharf queue`: talk to a running host through its HTTP
//! API, the same way for every connection kind.

use super::api::{HostArg, answer};
use crate::broker::Address;
use crate::message::{HeaderValue, Message};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::Read;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Where to publish: CONNECTION:ADDRESS, e.g. local:demo.in.
    address: String,
    /// The payload; `-` (or nothing) reads standard input.
    data: Option<String>,
    /// A header, NAME=VALUE (repeatable; values are text).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[arg(long)]
    content_type: Option<String>,
    #[arg(long)]
    correlation_id: Option<String>,
    #[arg(long)]
    reply_to: Option<String>,
    /// Hand the message to the host's outbox: answered once it is in the host's database,
    /// and sent when the broker takes it, even if the broker is down now.
    #[arg(long)]
    durable: bool,
    #[command(flatten)]
    host: HostArg,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Where to consume from: CONNECTION:ADDRESS.
    address: String,
    /// How many messages to take.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// How long to wait for them, in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Print each message's JSON form instead of its payload.
    #[arg(long)]
    json: bool,
    /// Hold each message unsettled for this many seconds instead of acking it: each is
    /// printed after its lease id (`LEASE<TAB>payload`), to settle with `wharf lease
    /// ack|nack|extend LEASE`; one not settled in time goes back to its queue.
    #[arg(long, value_name = "SECS")]
    lease: Option<f64>,
    /// With --lease: keep taking, each message printed as it arrives, at most --count held
    /// unsettled at once (the next comes as one is settled), until interrupted. Leases held
    /// then go back to their queues at their deadlines unless settled.
    #[arg(long, requires = "lease")]
    follow: bool,
    #[command(flatten)]
    host: HostArg,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every queue the host uses, on every connection: who reads and writes it, how many
    /// messages wait, and its dead letters.
    List {
        /// Only queues whose address or unit contains this.
        #[arg(long, default_value = "")]
        filter: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArg,
    },
    /// Depth, ready, in flight, delayed and the oldest message's age.
    Stats {
        address: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Show up to COUNT ready messages of a queue without taking them.
    Peek {
        address: String,
        /// How many messages to show (at most 1000).
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Print each message's JSON form instead of its payload.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArg,
    },
    /// Remove every message of a queue.
    Purge {
        address: String,
        #[command(flatten)]
        host: HostArg,
    },
}

/// The API URL of `address`, each part one path segment (so `rabbit:events/Booking.created`,
/// an exchange and routing key, is sent as `events%2FBooking.created`).
fn queue_url(host: &HostArg, address: &str) -> anyhow::Result<String> {
    let address = Address::parse(address)?;
    let base = host.base()?;
    let mut url = reqwest::Url::parse(&base).with_context(|| format!("`{base}` is not a URL"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("`{base}` cannot have a path"))?
        .pop_if_empty()
        .extend(["api", "v1", "queues", &address.connection, &address.address]);
    Ok(url.to_string())
}

/// A message from the command line: the payload (`DATA`, or standard input for `-` or
/// nothing) and `--header NAME=VALUE`s.
fn message_from_args(data: Option<&str>, headers: &[String]) -> anyhow::Result<Message> {
    let payload = match data {
        Some(data) if data != "-" => data.as_bytes().to_vec(),
        _ => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .context("reading the payload from standard input")?;
            data
        }
    };
    let mut msg = Message::new("", payload);
    for header in headers {
        let (name, value) = header
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .with_context(|| format!("--header `{header}` is not NAME=VALUE"))?;
        msg.headers
            .push((name.to_owned(), HeaderValue::Text(value.to_owned())));
    }
    Ok(msg)
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let mut msg = message_from_args(args.data.as_deref(), &args.headers)?;
    msg.content_type = args.content_type;
    msg.correlation_id = args.correlation_id;
    msg.reply_to = args.reply_to;
    if args.durable {
        let api = super::api::Api::new(&args.host)?;
        let body = api
            .send(
                reqwest::Method::POST,
                "outbox",
                Some(serde_json::json!({ "to": args.address, "message": msg.to_json() })),
            )
            .await?;
        let id = body["ids"][0].as_str().unwrap_or(&msg.id);
        println!("accepted {id} into the outbox");
        return Ok(ExitCode::SUCCESS);
    }
    let url = format!("{}/messages", queue_url(&args.host, &args.address)?);
    let body = answer(args.host.client()?.post(&url).json(&msg.to_json()), &url).await?;
    println!("published {}", body["id"].as_str().unwrap_or(&msg.id));
    Ok(ExitCode::SUCCESS)
}

/// Prints messages as the API returned them: each payload, or each whole JSON form.
fn print_messages(messages: &[Value], json: bool) -> anyhow::Result<()> {
    for doc in messages {
        if json {
            println!("{doc}");
            continue;
        }
        // The JSON form carries the payload as text when it is UTF-8, else as base64.
        match (doc["payload"].as_str(), doc.get("payload_base64")) {
            (Some(text), _) => println!("{text}"),
            (None, Some(base64)) => println!("{base64}"),
            (None, None) => bail!("the host sent a message without a payload: {doc}"),
        }
    }
    Ok(())
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    if !args.timeout.is_finite() || args.timeout < 0.0 {
        bail!("--timeout must be a number of seconds, 0 or more");
    }
    if args.follow {
        return follow(args).await;
    }
    let timeout_ms = (args.timeout * 1000.0) as u64;
    let mut query = vec![("count", args.count as u64), ("timeout_ms", timeout_ms)];
    let verb = match args.lease {
        Some(secs) if !secs.is_finite() || secs <= 0.0 => {
            bail!("--lease must be a number of seconds above 0")
        }
        Some(secs) => {
            query.push(("lease_ms", (secs * 1000.0).ceil() as u64));
            "lease"
        }
        None => "take",
    };
    let url = format!("{}/{verb}", queue_url(&args.host, &args.address)?);
    let request = args.host.client()?.post(&url).query(&query);
    let body = answer(request, &url).await?;
    let messages = body.as_array().cloned().unwrap_or_default();
    if args.lease.is_some() {
        for leased in &messages {
            print_leased(leased, args.json)?;
        }
    } else {
        print_messages(&messages, args.json)?;
    }
    if messages.len() < args.count {
        eprintln!(
            "got {} of {} messages within {} s",
            messages.len(),
            args.count,
            args.timeout
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one leased message as `consume --lease` does.
fn print_leased(leased: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{leased}");
    } else {
        print!("{}\t", leased["lease"].as_str().unwrap_or(""));
        print_messages(std::slice::from_ref(&leased["message"]), false)?;
    }
    Ok(())
}

/// `consume --lease SECS --follow`: a lease stream, each message printed as it arrives.
async fn follow(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let secs = args.lease.unwrap_or(30.0);
    if !secs.is_finite() || secs <= 0.0 {
        bail!("--lease must be a number of seconds above 0");
    }
    let url = format!("{}/lease/stream", queue_url(&args.host, &args.address)?);
    let query = [
        ("prefetch", args.count as u64),
        ("lease_ms", (secs * 1000.0).ceil() as u64),
    ];
    let mut response = args
        .host
        .client()?
        .post(&url)
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach the host at {url}: is `wharf serve` running?"))?;
    if !response.status().is_success() {
        // The refusal is the API's usual error body.
        return super::api::answer_of(response)
            .await
            .map(|_| ExitCode::FAILURE);
    }
    let mut line = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.context("the host's stream broke off")?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let Some(chunk) = chunk else {
            eprintln!("the host ended the stream");
            return Ok(ExitCode::SUCCESS);
        };
        for byte in chunk {
            if byte != b'\n' {
                line.push(byte);
                continue;
            }
            if !line.is_empty() {
                let doc: Value = serde_json::from_slice(&line)
                    .context("the host sent a line that is not JSON")?;
                if let Some(error) = doc.get("error") {
                    bail!(
                        "the stream failed: {}",
                        error["message"].as_str().unwrap_or("no detail")
                    );
                }
                print_leased(&doc, args.json)?;
                std::io::stdout().flush()?;
            }
            line.clear();
        }
    }
}

pub async fn queue(command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::List { filter, json, host } => {
            let api = super::api::Api::new(&host)?;
            let path = format!(
                "queues?filter={}",
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            );
            let list = api.get(&path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = list["queues"].as_array().map_or(&[][..], Vec::as_slice);
            if rows.is_empty() {
                eprintln!("no queues{}", if filter.is_empty() { "" } else { " match" });
            }
            for row in rows {
                let depth = &row["depth"];
                let waiting = depth["depth"]
                    .as_u64()
                    .or(depth["ready"].as_u64())
                    .map_or_else(|| "?".to_owned(), |n| n.to_string());
                let used: Vec<String> = row["used_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        format!(
                            "{} by {} {}",
                            u["role"].as_str().unwrap_or(""),
                            u["kind"].as_str().unwrap_or(""),
                            u["unit"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                println!(
                    "{:<40} {:>8} waiting{}{}  {}",
                    row["address"].as_str().unwrap_or(""),
                    waiting,
                    row["dead_letters"]
                        .as_u64()
                        .map(|n| format!(", {n} dead"))
                        .unwrap_or_default(),
                    row["error"]
                        .as_str()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default(),
                    used.join("; ")
                );
            }
            if list["truncated"].as_bool() == Some(true) {
                eprintln!("(the first 500 only: narrow it with --filter)");
            }
        }
        QueueCommand::Stats { address, host } => {
            let url = queue_url(&host, &address)?;
            let stats = answer(host.client()?.get(&url), &url).await?;
            // Each transport tells what it can: the words for what it told, in order.
            let mut said: Vec<String> = [
                ("depth", "depth"),
                ("ready", "ready"),
                ("in_flight", "in flight"),
                ("delayed", "delayed"),
                ("consumers", "consumers"),
            ]
            .into_iter()
            .filter_map(|(field, words)| stats[field].as_u64().map(|n| format!("{words} {n}")))
            .collect();
            if let Some(ms) = stats["oldest_age_ms"].as_u64() {
                said.push(format!("oldest {ms} ms"));
            }
            if let Some(partitions) = stats["partitions"].as_array() {
                let offsets: Vec<String> = partitions
                    .iter()
                    .map(|p| format!("{}: {}..{}", p["partition"], p["low"], p["high"]))
                    .collect();
                said.push(format!("partitions (offsets) {}", offsets.join(", ")));
            }
            println!("{address}: {}", said.join(", "));
        }
        QueueCommand::Peek {
            address,
            count,
            json,
            host,
        } => {
            let url = format!("{}/messages", queue_url(&host, &address)?);
            let request = host.client()?.get(&url).query(&[("count", count as u64)]);
            let body = answer(request, &url).await?;
            print_messages(body.as_array().map_or(&[][..], Vec::as_slice), json)?;
        }
        QueueCommand::Purge { address, host } => {
            let url = format!("{}/messages", queue_url(&host, &address)?);
            let body = answer(host.client()?.delete(&url), &url).await?;
            println!("purged {} messages from {address}", body["purged"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct RpcArgs {
    /// Where to send the request: CONNECTION:ADDRESS, e.g. local:echo.in.
    address: String,
    /// The payload; `-` (or nothing) reads standard input.
    data: Option<String>,
    /// A header, NAME=VALUE (repeatable; values are text).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[arg(long)]
    content_type: Option<String>,
    /// How long to wait for the reply.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Print the whole reply as JSON instead of its payload.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: HostArg,
}

/// `wharf rpc`: sends a request through the host and prints its reply.
pub async fn rpc(args: RpcArgs) -> anyhow::Result<ExitCode> {
    let mut msg = message_from_args(args.data.as_deref(), &args.headers)?;
    msg.content_type = args.content_type;
    let address = Address::parse(&args.address)?;
    let url = format!(
        "{}/api/v1/rpc/{}/{}?timeout_ms={}",
        args.host.base()?,
        address.connection,
        address.address,
        args.timeout_ms
    );
    let reply = answer(args.host.client()?.post(&url).json(&msg.to_json()), &url).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else if let Some(text) = reply["payload"].as_str() {
        println!("{text}");
    } else {
        println!("{}", reply["payload_base64"].as_str().unwrap_or(""));
    }
    if reply["headers"].get("exception").is_some() {
        eprintln!(
            "the reply carries an exception: {}",
            reply["headers"]["exception"]
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// The leased messages the host holds: lease, queue, message id, time left.
    List {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Leased messages done with: removed from their queues (all in one call).
    Ack {
        #[arg(required = true, num_args = 1..)]
        lease: Vec<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Give leased messages back to their queues (after --delay SECS: a retry), or with --dead
    /// to their dead letters (with --exception-name and --exception saying why); all in one
    /// call.
    Nack {
        #[arg(required = true, num_args = 1..)]
        lease: Vec<String>,
        /// To the queue's dead letters instead of back to the queue.
        #[arg(long)]
        dead: bool,
        /// Back to the queue after SECS, not at once.
        #[arg(long, value_name = "SECS", conflicts_with = "dead")]
        delay: Option<f64>,
        /// The dead letter's `exception_name`: the error's class (`KeyError`).
        #[arg(long, value_name = "NAME", requires = "dead")]
        exception_name: Option<String>,
        /// The dead letter's `exception`: the error's text.
        #[arg(long, value_name = "TEXT", requires = "exception_name")]
        exception: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Hold a leased message for SECS more from now.
    Extend {
        lease: String,
        secs: f64,
        #[command(flatten)]
        host: HostArg,
    },
    /// The lease streams open on the host (`consume --lease --follow`, workers): stream,
    /// queue, taker, messages leased.
    Streams {
        #[command(flatten)]
        host: HostArg,
        #[arg(long)]
        json: bool,
    },
    /// Stop a lease stream (your own, or any as an admin): it takes nothing more; what it
    /// leased stays its taker's to settle.
    Stop {
        stream: String,
        #[command(flatten)]
        host: HostArg,
    },
}

/// Settles a batch through `/api/v1/leases/settle`: a line for each lease settled (`done`
/// writes it), and each that was not on stderr; fails if any was not.
async fn settle(
    host: &HostArg,
    body: Value,
    leases: &[String],
    done: impl Fn(&str) -> String,
) -> anyhow::Result<ExitCode> {
    let answer = super::api::Api::new(host)?
        .send(reqwest::Method::POST, "leases/settle", Some(body))
        .await?;
    let failed = answer["failed"].as_array().map_or(&[][..], Vec::as_slice);
    let refused: std::collections::HashMap<&str, &str> = failed
        .iter()
        .map(|f| {
            (
                f["lease"].as_str().unwrap_or(""),
                f["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for lease in leases {
        match refused.get(lease.as_str()) {
            None => println!("{}", done(lease)),
            Some(error) => eprintln!("{lease}: {error}"),
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `wharf lease …`: settles what `wharf consume --lease` took.
pub async fn lease(command: LeaseCommand) -> anyhow::Result<ExitCode> {
    use reqwest::Method;
    let segment = super::api::segment;
    match command {
        LeaseCommand::List { host, json } => {
            let leases = super::api::Api::new(&host)?.get("leases").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&leases)?);
                return Ok(ExitCode::SUCCESS);
            }
            let all = leases.as_array().map_or(&[][..], Vec::as_slice);
            if all.is_empty() {
                eprintln!("no leases");
            }
            let now = crate::message::now_ms();
            for lease in all {
                let deadline = lease["deadline_ms"].as_u64().unwrap_or(0);
                println!(
                    "{}\t{}\t{}\tgoes back in {}",
                    lease["lease"].as_str().unwrap_or(""),
                    lease["address"].as_str().unwrap_or(""),
                    lease["message_id"].as_str().unwrap_or(""),
                    crate::time::span_text(deadline.saturating_sub(now))
                );
            }
        }
        LeaseCommand::Ack { lease, host } => {
            let body = serde_json::json!({ "ack": lease });
            return settle(&host, body, &lease, |id| format!("acked {id}")).await;
        }
        LeaseCommand::Nack {
            lease,
            dead,
            delay,
            exception_name,
            exception,
            host,
        } => {
            let mut back = serde_json::json!({ "requeue": !dead });
            if let Some(secs) = delay {
                if !secs.is_finite() || secs <= 0.0 {
                    anyhow::bail!("--delay must be a positive number of seconds");
                }
                back["delay_ms"] = serde_json::json!((secs * 1000.0).ceil() as u64);
            }
            if let Some(name) = exception_name {
                back["exception"] = serde_json::json!({
                    "name": name,
                    "message": exception.unwrap_or_default(),
                });
            }
            let nack: Vec<Value> = lease
                .iter()
                .map(|id| {
                    let mut one = back.clone();
                    one["lease"] = Value::from(id.as_str());
                    one
                })
                .collect();
            let body = serde_json::json!({ "nack": nack });
            return settle(&host, body, &lease, |id| match (dead, delay) {
                (true, _) => format!("{id} went to its dead letters"),
                (false, Some(secs)) => format!("{id} goes back to its queue in {secs} s"),
                (false, None) => format!("{id} went back to its queue"),
            })
            .await;
        }
        LeaseCommand::Extend { lease, secs, host } => {
            if !secs.is_finite() || secs <= 0.0 {
                bail!("SECS must be a number of seconds above 0");
            }
            let answer = super::api::Api::new(&host)?
                .send(
                    Method::POST,
                    &format!("leases/{}/extend", segment(&lease)),
                    Some(serde_json::json!({ "lease_ms": (secs * 1000.0).ceil() as u64 })),
                )
                .await?;
            let deadline = answer["deadline_ms"].as_u64().unwrap_or(0);
            println!(
                "{lease} is held for {} more",
                crate::time::span_text(deadline.saturating_sub(crate::message::now_ms()))
            );
        }
        LeaseCommand::Streams { host, json } => {
            let streams = super::api::Api::new(&host)?.get("leases/streams").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&streams)?);
                return Ok(ExitCode::SUCCESS);
            }
            let all = streams.as_array().map_or(&[][..], Vec::as_slice);
            if all.is_empty() {
                eprintln!("no lease streams");
            }
            for stream in all {
                println!(
                    "{}\t{}\t{}\tprefetch {}\t{} leased",
                    stream["stream"].as_str().unwrap_or(""),
                    stream["address"].as_str().unwrap_or(""),
                    stream["taker"].as_str().unwrap_or(""),
                    stream["prefetch"],
                    stream["streamed"],
                );
            }
        }
        LeaseCommand::Stop { stream, host } => {
            super::api::Api::new(&host)?
                .send(
                    Method::DELETE,
                    &format!("leases/streams/{}", segment(&stream)),
                    None,
                )
                .await?;
            println!("stopped {stream}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
