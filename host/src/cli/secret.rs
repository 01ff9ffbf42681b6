//! `wharf secret rotate`: seals every stored secret (connections, plugin policies) again with
//! the host's current key, on the database directly. How a key is rotated: give every host
//! the new key as `server.secret_key_file` and the old one in
//! `server.previous_secret_key_files`, run this once (or restart a host, which does the same),
//! then drop the old key.

use crate::config::Config;
use crate::store::Store;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Seal every stored secret with the current key (after a rotation).
    Rotate {
        /// The host's configuration file: its database and keys (default: the embedded
        /// defaults, `sqlite://wharf.db` and the key in the state folder).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub async fn run(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Rotate { config } => {
            let config = Config::load(config.as_deref())?;
            let keyring = crate::secrets::Keyring::load(&config.server.key_sources())
                .context("server.secret_key_file")?;
            let current = keyring.current_id().to_owned();
            let store = Store::open(&config.server.database)
                .await?
                .with_keyring(Arc::new(keyring));
            let resealed = store.reseal_secrets().await?;
            super::access::audited(
                &store,
                "secret.rotate",
                &current,
                serde_json::json!({ "resealed": resealed }),
            )
            .await;
            store.close().await;
            println!("sealed {resealed} stored secret document(s) with key {current}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
