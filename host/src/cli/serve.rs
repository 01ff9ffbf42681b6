//! `wharf serve`: run the host until SIGTERM or Ctrl-C.

use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

pub async fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    // The handlers are installed before the host starts, so a SIGTERM that comes while it
    // starts stops it as soon as it has, rather than killing it half-started.
    let signal = signal()?;
    crate::host::serve(config, signal).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or Ctrl-C (SIGINT); the handlers are installed when this is called.
#[cfg(unix)]
fn signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
