//! `wharf status`, `wharf connection` and the plugin commands that change a
//! host (`plugin install|list|enable|disable|rollback|grant|revoke|delete|policy`): all
//! through the running host's API, so a change takes one path, whoever makes it.

use super::api::{Api, HostArg, answer, print, segment};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    host: HostArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `wharf status`: every connection and unit of the host, with its state and last error.
pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.host)?;
    let status = api.get("status").await?;
    if args.json {
        print(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("revision {}", status["revision"]);
    println!("\nconnections:");
    for c in status["connections"].as_array().into_iter().flatten() {
        println!(
            "  {:<16} {:<9} {:<5} {:<5} {}",
            c["name"].as_str().unwrap_or(""),
            c["kind"].as_str().unwrap_or(""),
            c["source"].as_str().unwrap_or(""),
            c["state"].as_str().unwrap_or(""),
            c["error"].as_str().unwrap_or("")
        );
    }
    println!("\nunits:");
    let mut healthy = true;
    for u in status["units"].as_array().into_iter().flatten() {
        let state = u["state"].as_str().unwrap_or("");
        // A daemon in standby is healthy: another host runs it.
        healthy &= matches!(state, "running" | "standby");
        let plugins: Vec<&str> = u["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "  {:<12} {:<20} {:<5} {:<11} {}{}",
            u["kind"].as_str().unwrap_or(""),
            u["name"].as_str().unwrap_or(""),
            u["source"].as_str().unwrap_or(""),
            state,
            plugins.join(" → "),
            u["note"]
                .as_str()
                .map(|note| format!("\n        {note}"))
                .unwrap_or_default()
                + &u["error"]
                    .as_str()
                    .map(|e| format!("\n        last error: {e}"))
                    .unwrap_or_default()
        );
    }
    for r in status["refused"].as_array().into_iter().flatten() {
        healthy = false;
        println!(
            "  not run here: {} `{}`: {}",
            r["kind"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["problem"].as_str().unwrap_or("")
        );
    }
    let consumers = status["consumers"].as_array().into_iter().flatten();
    for (i, c) in consumers.enumerate() {
        if i == 0 {
            println!("\nconsumer groups (partitions assigned to this host, records not yet read):");
        }
        let partitions = c["partitions"].as_array().map_or(&[][..], Vec::as_slice);
        println!(
            "  {:<16} {:<32} {} partition(s){}",
            c["connection"].as_str().unwrap_or(""),
            c["group"].as_str().unwrap_or(""),
            partitions.len(),
            c["unit"]
                .as_str()
                .map(|u| format!(", for {u}"))
                .unwrap_or_default()
        );
        for p in partitions {
            println!(
                "    {}[{}]  lag {}",
                p["topic"].as_str().unwrap_or(""),
                p["partition"],
                p["lag"]
                    .as_i64()
                    .map_or_else(|| "not yet measured".to_owned(), |lag| lag.to_string())
            );
        }
    }
    if status["outbox"].is_object() {
        println!("\noutbox (every host's on this database):");
        for line in super::outbox::describe(&status["outbox"]) {
            println!("  {line}");
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// `GET /api/v1/{nouns}` printed: its JSON with `json`, else each item with `line`, or
/// `no {nouns}` on standard error when there are none.
pub(crate) async fn list(
    host: &HostArg,
    nouns: &str,
    json: bool,
    line: impl Fn(&Value),
) -> anyhow::Result<()> {
    let all = Api::new(host)?.get(nouns).await?;
    if json {
        return print(&all);
    }
    let items = all.as_array().map_or(&[][..], Vec::as_slice);
    if items.is_empty() {
        eprintln!("no {nouns}");
    }
    items.iter().for_each(line);
    Ok(())
}

/// `GET /api/v1/{nouns}/{name}`, printed as JSON.
pub(crate) async fn show(host: &HostArg, nouns: &str, name: &str) -> anyhow::Result<()> {
    print(
        &Api::new(host)?
            .get(&format!("{nouns}/{}", segment(name)))
            .await?,
    )
}

#[derive(Debug, Subcommand)]
pub enum PluginApiCommand {
    /// Upload a plugin to the host: checked, then stored as a new version (serving at once
    /// unless --disabled) on every host on the database.
    Install {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Store it without letting it serve yet (`plugin enable` later).
        #[arg(long)]
        disabled: bool,
        /// The installed plugin this file is a new version of: without it, a file that names
        /// itself as an installed plugin is refused (it would take that plugin's grants,
        /// config and kv state).
        #[arg(long, value_name = "NAME")]
        upgrade: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// List the plugins (each with the version it serves), or every version of one.
    List {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArg,
    },
    /// Let a version serve.
    Enable {
        name: String,
        #[arg(id = "plugin_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Stop a version serving (routes naming the plugin move to the newest enabled one).
    Disable {
        name: String,
        #[arg(id = "plugin_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Go back to the version before the one serving.
    Rollback {
        name: String,
        #[command(flatten)]
        host: HostArg,
    },
    /// Grant a plugin what it may do: `publish:rabbit:orders.*`, or outbound HTTP to an
    /// origin: `http:https://api.example.com` (repeatable).
    Grant {
        name: String,
        #[arg(required = true)]
        grants: Vec<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Take grants away.
    Revoke {
        name: String,
        #[arg(required = true)]
        grants: Vec<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Set a plugin's limits and config (the options given replace the current ones).
    Policy {
        name: String,
        #[arg(long)]
        memory_mb: Option<u64>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Wall-clock time one call may take, waits in host calls included (default: ten
        /// times --timeout-ms).
        #[arg(long)]
        wall_ms: Option<u64>,
        /// The most one call may hand the host: results, publications, requests, kv writes.
        #[arg(long)]
        output_mb: Option<u64>,
        #[arg(long)]
        max_instances: Option<u64>,
        /// A config value for the plugin, KEY=VALUE (repeatable; replaces the whole config).
        /// `--set`, because `--config` names the host's configuration file.
        #[arg(long = "set", id = "settings", value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Delete a version no route uses.
    Delete {
        name: String,
        #[arg(id = "plugin_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        host: HostArg,
    },
}

fn print_plugin(view: &Value) {
    println!(
        "{:<20} {:<5} serving {}  grants [{}]",
        view["name"].as_str().unwrap_or(""),
        view["source"].as_str().unwrap_or(""),
        view["serving"].as_str().unwrap_or("(none)"),
        view["policy"]["grants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_versions(view: &Value) {
    println!(
        "  {:<10} {:<12} {:<8} {:<12} {:>9}  uploaded by",
        "version", "kind", "enabled", "sha256", "bytes"
    );
    for v in view["versions"].as_array().into_iter().flatten() {
        println!(
            "  {:<10} {:<12} {:<8} {:<12} {:>9}  {}",
            v["version"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
            v["enabled"],
            v["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            v["size_bytes"],
            v["uploaded_by"].as_str().unwrap_or("(file)")
        );
    }
}

pub async fn plugin(command: PluginApiCommand) -> anyhow::Result<ExitCode> {
    let post = reqwest::Method::POST;
    match command {
        PluginApiCommand::Install {
            file,
            disabled,
            upgrade,
            host,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let api = Api::new(&host)?;
            let mut url = api.url(&format!("plugins?enabled={}", !disabled));
            if let Some(name) = &upgrade {
                url.push_str(&format!("&upgrade={}", segment(name)));
            }
            let answer = answer(
                api.client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .body(bytes),
                &url,
            )
            .await?;
            let version = &answer["version"];
            println!(
                "{} {} {} ({}, sha256 {}){}",
                if answer["outcome"] == "created" {
                    "installed"
                } else {
                    "already installed, nothing changed:"
                },
                answer["name"].as_str().unwrap_or(""),
                version["version"].as_str().unwrap_or(""),
                version["kind"].as_str().unwrap_or(""),
                version["sha256"]
                    .as_str()
                    .unwrap_or("")
                    .get(..12)
                    .unwrap_or(""),
                if version["enabled"] == true {
                    ""
                } else {
                    "; disabled until `wharf plugin enable`"
                }
            );
            let wants: Vec<&str> = version["wants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !wants.is_empty() {
                println!(
                    "it asks for: {} (not in force until `wharf plugin grant`)",
                    wants.join(", ")
                );
            }
        }
        PluginApiCommand::List { name, json, host } => {
            let api = Api::new(&host)?;
            let value = match &name {
                Some(name) => api.get(&format!("plugins/{}", segment(name))).await?,
                None => api.get("plugins").await?,
            };
            if json {
                print(&value)?;
            } else if name.is_some() {
                print_plugin(&value);
                print_versions(&value);
            } else if value.as_array().is_none_or(|a| a.is_empty()) {
                println!("no plugins");
            } else {
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .for_each(print_plugin);
            }
        }
        PluginApiCommand::Enable {
            name,
            version,
            host,
        } => print_plugin(
            &Api::new(&host)?
                .send(
                    post,
                    &format!(
                        "plugins/{}/versions/{}/enable",
                        segment(&name),
                        segment(&version)
                    ),
                    None,
                )
                .await?,
        ),
        PluginApiCommand::Disable {
            name,
            version,
            host,
        } => print_plugin(
            &Api::new(&host)?
                .send(
                    post,
                    &format!(
                        "plugins/{}/versions/{}/disable",
                        segment(&name),
                        segment(&version)
                    ),
                    None,
                )
                .await?,
        ),
        PluginApiCommand::Rollback { name, host } => print_plugin(
            &Api::new(&host)?
                .send(post, &format!("plugins/{}/rollback", segment(&name)), None)
                .await?,
        ),
        PluginApiCommand::Grant { name, grants, host } => print_plugin(
            &Api::new(&host)?
                .send(
                    post,
                    &format!("plugins/{}/grants", segment(&name)),
                    Some(json!({ "grants": grants })),
                )
                .await?,
        ),
        PluginApiCommand::Revoke { name, grants, host } => print_plugin(
            &Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("plugins/{}/grants", segment(&name)),
                    Some(json!({ "grants": grants })),
                )
                .await?,
        ),
        PluginApiCommand::Policy {
            name,
            memory_mb,
            timeout_ms,
            wall_ms,
            output_mb,
            max_instances,
            config,
            host,
        } => {
            let api = Api::new(&host)?;
            let path = format!("plugins/{}", segment(&name));
            let mut policy = api.get(&path).await?["policy"].clone();
            if let Some(v) = memory_mb {
                policy["memory_mb"] = v.into();
            }
            if let Some(v) = timeout_ms {
                policy["timeout_ms"] = v.into();
            }
            if let Some(v) = wall_ms {
                policy["wall_ms"] = v.into();
            }
            if let Some(v) = output_mb {
                policy["output_mb"] = v.into();
            }
            if let Some(v) = max_instances {
                policy["max_instances"] = v.into();
            }
            if !config.is_empty() {
                let mut map = serde_json::Map::new();
                for pair in &config {
                    let (k, v) = pair
                        .split_once('=')
                        .with_context(|| format!("`{pair}` is not KEY=VALUE"))?;
                    map.insert(k.to_owned(), v.into());
                }
                policy["config"] = Value::Object(map);
            }
            print_plugin(
                &api.send(
                    reqwest::Method::PUT,
                    &format!("{path}/policy"),
                    Some(policy),
                )
                .await?,
            );
        }
        PluginApiCommand::Delete {
            name,
            version,
            host,
        } => {
            Api::new(&host)?
                .send(
                    reqwest::Method::DELETE,
                    &format!("plugins/{}/versions/{}", segment(&name), segment(&version)),
                    None,
                )
                .await?;
            println!("deleted {name} {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    host: HostArg,
    /// Only what this user (or `token:NAME`) did.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, or those starting so (`route`, `plugin.upload`).
    #[arg(long)]
    action: Option<String>,
    /// Only what was done to this route, plugin, connection, user or token.
    #[arg(long)]
    target: Option<String>,
    /// How many entries, newest first (1 to 1,000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `wharf audit`: who changed what on the host, and when, newest first (admin).
pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.host)?;
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &args.limit.to_string());
    for (key, value) in [
        ("actor", &args.actor),
        ("action", &args.action),
        ("target", &args.target),
    ] {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    let entries = api.get(&format!("audit?{}", query.finish())).await?;
    if args.json {
        print(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let entries = entries.as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        eprintln!("nothing recorded that matches");
    }
    for e in entries {
        let detail = match &e["detail"] {
            Value::Object(map) if map.is_empty() => String::new(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        println!(
            "{}  {:<20} {:<4} {:<24} {:<20} {detail}",
            crate::time::utc_text(e["at_ms"].as_i64().unwrap_or(0)),
            e["actor"].as_str().unwrap_or(""),
            e["via"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["target"].as_str().unwrap_or(""),
        );
    }
    Ok(ExitCode::SUCCESS)
}
