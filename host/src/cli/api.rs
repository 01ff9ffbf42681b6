//! The CLI's side of the host's API: which host to talk to and as whom ([`HostArg`]), the
//! client that calls it ([`Api`]), and the small helpers every command shares.

use crate::config::Config;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

/// Which host to talk to, and as whom.
#[derive(Debug, Args)]
pub struct HostArg {
    /// The host's URL (default: the `server.listen` of --config, else http://127.0.0.1:8080).
    #[arg(long, env = "WHARF_URL")]
    url: Option<String>,
    /// The host's configuration file, to find its listen address.
    #[arg(long)]
    config: Option<PathBuf>,
    /// An API token (default: the one a host on this machine keeps for its CLI).
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of the CA to trust for an `https://` host (besides the system's).
    #[arg(long, env = "WHARF_CA")]
    ca: Option<PathBuf>,
}

impl HostArg {
    /// A client that presents the token: `--token`, else the file the host at the URL keeps
    /// for the CLI on its machine (see `auth::local_token_path`), else none.
    pub(crate) fn client(&self) -> anyhow::Result<reqwest::Client> {
        let token = match &self.token {
            Some(token) => Some(token.trim().to_owned()),
            None => self.local_token()?,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token holds characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let tls = crate::tls::client_config(Some(&crate::tls::TlsConfig {
            ca: self.ca.clone(),
            cert: None,
            key: None,
            pkcs12: None,
            pkcs12_password: String::new(),
        }))
        .context("--ca")?;
        Ok(reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(crate::web::caller::CLI_AGENT)
            .default_headers(headers)
            .build()?)
    }

    /// The token a host on this machine, at the URL's address, keeps for its CLI.
    fn local_token(&self) -> anyhow::Result<Option<String>> {
        let base = self.base()?;
        let url = reqwest::Url::parse(&base).with_context(|| format!("`{base}` is not a URL"))?;
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Ok(None);
        };
        let host = if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        };
        let Ok(addr) = format!("{host}:{port}").parse::<std::net::SocketAddr>() else {
            return Ok(None);
        };
        // A token file another user could have written is not trusted: it could be theirs.
        let Ok(path) = crate::auth::local_token_path(addr) else {
            return Ok(None);
        };
        if let Err(e) = crate::private::check_private(&path) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                anyhow::bail!("the CLI's token is refused: {e}");
            }
            return Ok(None);
        }
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok(Some(token.trim().to_owned())),
            Err(_) => Ok(None),
        }
    }

    pub(crate) fn base(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let config = match &self.config {
            Some(path) => Config::load(Some(path))?,
            None => Config::default(),
        };
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        // A host listening on every address is reached at this machine's own.
        let mut listen = config.server.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Ok(format!("{scheme}://{listen}"))
    }
}

/// Sends a request and turns an error answer into its message.
pub(crate) async fn answer(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the host at {url}: is `wharf serve` running?"))?;
    answer_of(response).await
}

/// A response's JSON body, or its error answer as an error.
pub(crate) async fn answer_of(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no detail");
        match body["error"]["field"].as_str() {
            Some(field) => bail!("the host answered {status}: {field}: {message}"),
            None => bail!("the host answered {status}: {message}"),
        }
    }
    Ok(body)
}

/// A call to the host's API.
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(host: &HostArg) -> anyhow::Result<Api> {
        Ok(Api {
            client: host.client()?,
            base: host.base()?,
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.base)
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Whether a host answers at the address (its open `/healthz`), within two seconds.
    pub(crate) async fn answers(&self) -> bool {
        let probe = self
            .client
            .get(format!("{}/healthz", self.base))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await;
        probe.is_ok_and(|r| r.status().is_success())
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = self.url(path);
        answer(self.client.get(&url), &url).await
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut request = self.client.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request, &url).await
    }
}

/// A path segment, escaped.
pub(crate) use crate::address::escape as segment;

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Reads a JSON document from a file, or `-` for standard input.
pub(crate) fn read_json(source: &str) -> anyhow::Result<Value> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))
}
