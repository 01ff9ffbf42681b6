//! Request and reply, each beside a bare baseline in the same run. Prints figures; checks only
//! that every call got its own reply.
//!
//! 1. RPC over RabbitMQ: calls through the host's correlation table (`host.rpc.call`) to a
//!    route `rabbit:bench.rpc.echo` → `echo` (concurrency 64, no `to`: the handler's reply goes
//!    to the request's reply-to), beside a bare lapin 4 request/reply pair doing the same work:
//!    a server consuming a durable queue with prefetch 64 that publishes each payload back to
//!    the request's reply-to with its correlation id and then acks, and a client that publishes
//!    requests with a correlation id and reply-to = its own reply queue (exclusive, and durable
//!    like Wharf's) and pairs replies through a map of oneshot senders. Both sides do what
//!    Wharf does: persistent messages (delivery mode 2) on durable queues, `mandatory`
//!    publishes on four confirm-mode channels, each send waiting for its confirm, each request
//!    acked after its reply's confirm, each reply acked once handed to its caller, everything
//!    on one connection.
//!    Measured twice: called from the host that runs the route (its reply is handed to the
//!    caller in-process: only the request crosses RabbitMQ), and from a second host in the
//!    same process with no routes of its own (the reply crosses RabbitMQ to that host's
//!    reply queue and its listener: the same two legs as the bare pair).
//! 2. HTTP ingress with a reply: `POST /ingress/web/shout` on the same host, a route
//!    `web:shout` → `uppercase` → `echo` (concurrency 64, no `to`: the reply is the answer),
//!    beside a bare axum 0.8 server upper-casing the body natively; the same reqwest client
//!    (keep-alive) for both.
//!
//! 3. Memory over a million calls: 1,000,000 calls (256 in flight) through the correlation
//!    table to the `echo` route, with the process's resident memory after each 100,000: the
//!    table holds only calls in flight, so it stays flat.
//!
//! Each of 1 and 2: p50, p99 and max over 2,000 sequential calls (1 in flight) after a warm-up, and calls
//! per second (and this process's CPU per call) over 20,000 calls with 64 in flight. 256-byte
//! payloads, each call's own, so a reply that is another call's fails the run.
//!
//! Run with `./dev bench` or `cargo bench -p wharf --bench rpc` (RabbitMQ at
//! `WHARF_TEST_AMQP`, by default amqp://guest:guest@127.0.0.1:5672/%2f).

mod common;

use common::amqp::{CHANNELS, amqp_url, clean, connect};
use common::cpu_time;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wharf::broker::Address;
use wharf::broker::amqp::AmqpConfig;
use wharf::broker::http::HttpConfig;
use wharf::config::{Config, ConnectionConfig, RouteConfig};
use wharf::message::Message;

/// Sequential calls before any is timed.
const WARM_UP: usize = 300;
/// Sequential calls timed one by one.
const SEQUENTIAL: usize = 2_000;
/// Calls in flight for the throughput figure.
const IN_FLIGHT: usize = 64;
/// Calls made with `IN_FLIGHT` in flight.
const CALLS: usize = 20_000;
const PAYLOAD_BYTES: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The targets for RPC over RabbitMQ.
const TARGET_P50: Duration = Duration::from_micros(1_500);
const TARGET_RATE: f64 = 5_000.0;

/// Wharf's route input (the bare pair uses queues of its own).
const ECHO_QUEUE: &str = "bench.rpc.echo";
const ECHO_DEAD: &str = "bench.rpc.echo.dead";
const BARE_REQUESTS: &str = "wharf.bench.rpc.bare.requests";
const BARE_REPLIES: &str = "wharf.bench.rpc.bare.replies";

/// Call `i`'s payload: 256 bytes of lower-case ASCII naming the call.
fn payload(i: usize) -> Vec<u8> {
    let mut text = format!("call {i:>7} ");
    while text.len() < PAYLOAD_BYTES {
        text.push('a');
    }
    text.into_bytes()
}

/// One call: makes call `i` and panics unless its own reply came back.
type Call = Arc<dyn Fn(usize) -> BoxFuture<'static, ()> + Send + Sync>;

struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

struct Rate {
    per_s: f64,
    cpu_us: f64,
}

struct Figures {
    latency: Latency,
    rate: Rate,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `WARM_UP` calls, then `SEQUENTIAL` timed one at a time; then `CALLS` with `IN_FLIGHT`
/// tasks calling at once.
async fn measure(call: Call) -> Figures {
    for i in 0..WARM_UP {
        call(i).await;
    }
    let mut times = Vec::with_capacity(SEQUENTIAL);
    for i in WARM_UP..WARM_UP + SEQUENTIAL {
        let started = Instant::now();
        call(i).await;
        times.push(started.elapsed());
    }
    times.sort();
    let latency = Latency {
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        max: times[times.len() - 1],
    };

    let first = WARM_UP + SEQUENTIAL;
    let next = Arc::new(AtomicUsize::new(first));
    let (cpu, started) = (cpu_time(), Instant::now());
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (call, next) = (call.clone(), next.clone());
        callers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + CALLS {
                    return;
                }
                call(i).await;
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a caller panicked: a call failed or got another's reply");
    }
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu);
    Figures {
        latency,
        rate: Rate {
            per_s: CALLS as f64 / elapsed.as_secs_f64(),
            cpu_us: cpu.as_secs_f64() * 1e6 / CALLS as f64,
        },
    }
}

/// Calls for the memory figure, and how often memory is read.
const MILLION: usize = 1_000_000;
const SAMPLE_EVERY: usize = 100_000;
const MEMORY_IN_FLIGHT: usize = 256;

/// This process's resident memory, in MiB.
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024.0
}

/// `MILLION` calls, `MEMORY_IN_FLIGHT` at a time; resident memory after each `SAMPLE_EVERY`.
async fn memory_over_a_million(call: Call) -> Vec<(usize, f64)> {
    let mut samples = vec![(0, resident_mib())];
    for chunk in 0..MILLION / SAMPLE_EVERY {
        let first = chunk * SAMPLE_EVERY;
        let next = Arc::new(AtomicUsize::new(first));
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..MEMORY_IN_FLIGHT {
            let (call, next) = (call.clone(), next.clone());
            callers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= first + SAMPLE_EVERY {
                        return;
                    }
                    call(i).await;
                }
            });
        }
        while let Some(done) = callers.join_next().await {
            done.expect("a caller panicked: a call failed or got another's reply");
        }
        samples.push((first + SAMPLE_EVERY, resident_mib()));
    }
    samples
}

// ---- Part 1, bare: a lapin request/reply pair ----

async fn confirm_channel(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
}

/// Publishes as Wharf sends: `mandatory`, waiting for the broker's confirm.
async fn publish_confirmed(channel: &Channel, queue: &str, payload: &[u8], props: BasicProperties) {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            payload,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirm, Confirmation::Ack(None)),
        "publishing to {queue}: {confirm:?}"
    );
}

struct BareClient {
    publishers: Vec<Channel>,
    next: AtomicUsize,
    waiters: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
}

impl BareClient {
    async fn call(&self, payload: &[u8]) -> Vec<u8> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id.clone(), tx);
        let channel = &self.publishers[self.next.fetch_add(1, Ordering::Relaxed) % CHANNELS];
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_correlation_id(id.as_str().into())
            .with_reply_to(BARE_REPLIES.into());
        publish_confirmed(channel, BARE_REQUESTS, payload, props).await;
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("no reply within {TIMEOUT:?}"))
            .expect("the reply listener stopped")
    }
}

/// The server: each request on its own task, its payload published back to its reply-to with
/// its correlation id, then acked (as a route does: ack after the reply's confirm).
async fn serve_bare(publishers: Vec<Channel>, mut requests: lapin::Consumer) {
    let mut n = 0usize;
    while let Some(Ok(delivery)) = requests.next().await {
        let channel = publishers[n % CHANNELS].clone();
        n += 1;
        tokio::spawn(async move {
            let Delivery {
                data,
                properties,
                acker,
                ..
            } = delivery;
            let reply_to = properties.reply_to().clone().expect("a reply-to");
            let mut props = BasicProperties::default().with_delivery_mode(2);
            if let Some(id) = properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            publish_confirmed(&channel, reply_to.as_str(), &data, props).await;
            acker.ack(BasicAckOptions::default()).await.unwrap();
        });
    }
}

/// The client's reply listener: each reply handed to its waiter, then acked.
async fn listen_bare(client: Arc<BareClient>, mut replies: lapin::Consumer) {
    while let Some(Ok(delivery)) = replies.next().await {
        let waiter = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| client.waiters.lock().unwrap().remove(id.as_str()));
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(delivery.data);
            }
            None => eprintln!("bare client: a reply nobody waits for"),
        }
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
}

async fn bare_rpc() -> Figures {
    let connection = connect().await;
    let declaring = connection.create_channel().await.unwrap();
    declaring
        .queue_declare(
            BARE_REQUESTS.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // The client's own reply queue; durable like Wharf's `wharf.reply.…`, so persistent
    // replies are stored the same way, and exclusive to this connection.
    declaring
        .queue_declare(
            BARE_REPLIES.into(),
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut publishers = Vec::new();
    for _ in 0..CHANNELS {
        publishers.push(confirm_channel(&connection).await);
    }

    let serving = connection.create_channel().await.unwrap();
    serving
        .basic_qos(IN_FLIGHT as u16, BasicQosOptions::default())
        .await
        .unwrap();
    let requests = serving
        .basic_consume(
            BARE_REQUESTS.into(),
            "bare-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let server = tokio::spawn(serve_bare(publishers.clone(), requests));

    let client = Arc::new(BareClient {
        publishers,
        next: AtomicUsize::new(0),
        waiters: Mutex::default(),
    });
    let listening = connection.create_channel().await.unwrap();
    // Wharf's reply listener consumes with prefetch 256.
    listening
        .basic_qos(256, BasicQosOptions::default())
        .await
        .unwrap();
    let replies = listening
        .basic_consume(
            BARE_REPLIES.into(),
            "bare-client".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let listener = tokio::spawn(listen_bare(client.clone(), replies));

    let call: Call = {
        let client = client.clone();
        Arc::new(move |i| {
            let client = client.clone();
            async move {
                let sent = payload(i);
                let reply = client.call(&sent).await;
                assert!(reply == sent, "bare call {i} got another's reply");
            }
            .boxed()
        })
    };
    let figures = measure(call).await;
    assert!(client.waiters.lock().unwrap().is_empty());
    server.abort();
    listener.abort();
    let _ = connection.close(200, "done".into()).await;
    figures
}

// ---- Part 1, Wharf: the correlation table and an `echo` route ----

fn wharf_rpc_call(host: &wharf::host::RunningHost) -> Call {
    let rpc = host.rpc.clone();
    let to = Address {
        connection: "rabbit".into(),
        address: ECHO_QUEUE.into(),
    };
    Arc::new(move |i| {
        let (rpc, to) = (rpc.clone(), to.clone());
        async move {
            let sent = payload(i);
            let reply = rpc
                .call(&to, Message::new("", sent.clone()), TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}"));
            assert!(reply.payload == sent, "call {i} got another's reply");
        }
        .boxed()
    })
}

fn wharf_config(dir: &std::path::Path) -> Config {
    let mut config = common::host_config(dir, "wharf.db");
    config.connections.insert(
        "rabbit".into(),
        ConnectionConfig::Amqp(Box::new(AmqpConfig {
            url: Some(amqp_url()),
            channels: CHANNELS,
            ..AmqpConfig::default()
        })),
    );
    config.connections.insert(
        "web".into(),
        ConnectionConfig::Http(Box::new(HttpConfig {
            anonymous: true,
            // The bench measures the path, not the per-caller limits.
            ingress_per_second: u32::MAX,
            ingress_bytes_per_second: u32::MAX,
            ..HttpConfig::default()
        })),
    );
    config.routes = vec![
        RouteConfig {
            name: "echo".into(),
            from: format!("rabbit:{ECHO_QUEUE}"),
            through: vec!["echo".into()],
            concurrency: IN_FLIGHT,
            ..RouteConfig::default()
        },
        RouteConfig {
            name: "shout".into(),
            from: "web:shout".into(),
            through: vec!["uppercase".into(), "echo".into()],
            concurrency: IN_FLIGHT,
            ..RouteConfig::default()
        },
    ];
    config
}

// ---- Part 2: HTTP with a reply ----

/// The bare server: `POST /shout` answers the body upper-cased.
async fn start_axum() -> (std::net::SocketAddr, oneshot::Sender<()>) {
    async fn shout(body: axum::body::Bytes) -> Vec<u8> {
        String::from_utf8_lossy(&body).to_uppercase().into_bytes()
    }
    let app = axum::Router::new().route("/shout", axum::routing::post(shout));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop)
}

/// `POST url` with `body`: the status and the answer's body.
async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = client.post(url).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Checks once that `url` answers "hello" with 200 "HELLO"; stops the run otherwise.
async fn check_shout(client: &reqwest::Client, url: &str) {
    let (status, body) = post(client, url, b"hello".to_vec()).await;
    assert!(
        status == 200 && body == b"HELLO",
        "POST {url} with \"hello\" must answer 200 \"HELLO\"; it answered {status} {:?}",
        String::from_utf8_lossy(&body)
    );
}

fn http_call(client: &reqwest::Client, url: &str) -> Call {
    let (client, url) = (client.clone(), url.to_owned());
    Arc::new(move |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let sent = payload(i);
            let expected = sent.to_ascii_uppercase();
            let (status, body) = post(&client, &url, sent).await;
            assert_eq!(status, 200, "call {i}: {}", String::from_utf8_lossy(&body));
            assert!(body == expected, "call {i} got another's answer");
        }
        .boxed()
    })
}

const NAME: usize = 46;

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<NAME$} {:>7.2} ms {:>7.2} ms {:>7.1} ms {:>9.0} {:>8.1} µs",
        ms(f.latency.p50),
        ms(f.latency.p99),
        ms(f.latency.max),
        f.rate.per_s,
        f.rate.cpu_us
    );
}

fn header(title: &str) {
    println!();
    println!("{title}");
    println!(
        "{:<NAME$} {:>32}   {:>21}",
        "",
        "1 in flight: p50, p99, max",
        format!("{IN_FLIGHT} in flight: calls/s"),
    );
    println!(
        "{:<NAME$} {:>10} {:>10} {:>10} {:>9} {:>11}",
        "", "p50", "p99", "max", "calls/s", "CPU/call"
    );
}

fn ratio(wharf: &Figures, bare: &Figures) {
    let times = |w: Duration, b: Duration| w.as_secs_f64() / b.as_secs_f64();
    println!(
        "{:<NAME$} {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2} {:>10.2}x",
        "wharf / bare",
        times(wharf.latency.p50, bare.latency.p50),
        times(wharf.latency.p99, bare.latency.p99),
        times(wharf.latency.max, bare.latency.max),
        wharf.rate.per_s / bare.rate.per_s,
        wharf.rate.cpu_us / bare.rate.cpu_us
    );
}

/// Wharf's RPC figures against the targets, saying by how much a missed one is missed.
fn against_targets(wharf: &Figures) {
    let p50 = wharf.latency.p50;
    let latency = if p50 <= TARGET_P50 {
        format!(
            "met ({:.2} ms, {:.2} ms under)",
            ms(p50),
            ms(TARGET_P50 - p50)
        )
    } else {
        format!(
            "MISSED by {:.2} ms ({:.2} ms, {:.2}x the target)",
            ms(p50 - TARGET_P50),
            ms(p50),
            p50.as_secs_f64() / TARGET_P50.as_secs_f64()
        )
    };
    let rate = wharf.rate.per_s;
    let throughput = if rate >= TARGET_RATE {
        format!("met ({rate:.0} calls/s, {:.0} over)", rate - TARGET_RATE)
    } else {
        format!(
            "MISSED by {:.0} calls/s ({rate:.0} calls/s, {:.0}% short)",
            TARGET_RATE - rate,
            (1.0 - rate / TARGET_RATE) * 100.0
        )
    };
    println!(
        "target p50 under {:.1} ms at 1 in flight: {latency}",
        ms(TARGET_P50)
    );
    println!("target {TARGET_RATE:.0} calls/s or more at {IN_FLIGHT} in flight: {throughput}");
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let admin = connect().await;
        let leftovers = [ECHO_QUEUE, ECHO_DEAD, BARE_REQUESTS, BARE_REPLIES];
        clean(&admin, &leftovers).await;

        // Part 1: bare first, with no host running.
        let bare = bare_rpc().await;
        clean(&admin, &[BARE_REQUESTS, BARE_REPLIES]).await;

        let dir = tempfile::tempdir().unwrap();
        let host = wharf::host::start(wharf_config(dir.path())).await.unwrap();
        let wharf = measure(wharf_rpc_call(&host)).await;
        assert_eq!(host.rpc.in_flight(), 0, "no waiter is left behind");
        // The same route, called from another host: the reply crosses RabbitMQ.
        let caller_dir = tempfile::tempdir().unwrap();
        let mut caller_config = wharf_config(caller_dir.path());
        caller_config.routes.clear();
        let caller = wharf::host::start(caller_config).await.unwrap();
        let crossing = measure(wharf_rpc_call(&caller)).await;
        assert_eq!(caller.rpc.in_flight(), 0, "no waiter is left behind");
        let caller_replies = caller.rpc.reply_queue().to_owned();
        caller.stop().await;

        // Part 2, with the same host (idle on RabbitMQ) running beside the bare server.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .unwrap();
        let (axum_addr, stop_axum) = start_axum().await;
        let bare_url = format!("http://{axum_addr}/shout");
        check_shout(&client, &bare_url).await;
        let bare_http = measure(http_call(&client, &bare_url)).await;
        let _ = stop_axum.send(());
        let wharf_url = format!("http://{}/ingress/web/shout", host.addr);
        check_shout(&client, &wharf_url).await;
        let wharf_http = measure(http_call(&client, &wharf_url)).await;
        // Last, so that the broker's work for a million calls does not weigh on the others.
        let memory = memory_over_a_million(wharf_rpc_call(&host)).await;
        assert_eq!(host.rpc.in_flight(), 0, "no waiter is left behind");

        let reply_queue = host.rpc.reply_queue().to_owned();
        host.stop().await;
        let reply_dead = format!("{reply_queue}.dead");
        let caller_dead = format!("{caller_replies}.dead");
        let ours = [
            ECHO_QUEUE,
            ECHO_DEAD,
            &reply_queue,
            &reply_dead,
            &caller_replies,
            &caller_dead,
        ];
        clean(&admin, &ours).await;
        let _ = admin.close(200, "done".into()).await;

        println!("{PAYLOAD_BYTES}-byte payloads, each call's own");
        println!("1 in flight: {SEQUENTIAL} sequential calls after {WARM_UP} warm-up calls");
        println!("{IN_FLIGHT} in flight: {CALLS} calls; CPU is this process's (client and server)");
        header("RPC over RabbitMQ: persistent, durable queues, mandatory, confirms");
        row("bare lapin request/reply pair", &bare);
        row("wharf: host.rpc.call -> echo route", &wharf);
        ratio(&wharf, &bare);
        against_targets(&wharf);
        row(
            "wharf, route on another host: reply via RabbitMQ",
            &crossing,
        );
        ratio(&crossing, &bare);
        against_targets(&crossing);
        header("HTTP with a reply (reqwest, keep-alive)");
        row("bare axum, native uppercase", &bare_http);
        row("wharf: /ingress/web/shout -> uppercase, echo", &wharf_http);
        ratio(&wharf_http, &bare_http);
        println!();
        println!(
            "Resident memory over {MILLION} calls ({MEMORY_IN_FLIGHT} in flight, same host), MiB:"
        );
        let line: Vec<String> = memory
            .iter()
            .map(|(calls, mib)| format!("{}k: {mib:.1}", calls / 1000))
            .collect();
        println!("  {}", line.join(", "));
    });
}
