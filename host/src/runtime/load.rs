//! Loading a plugin file: every check it passes before it may run (size, format, component,
//! validation, world, contract version, imports, `describe`, kind, settings), then compiled
//! (or read from the cache) and pre-instantiated.

use super::bindings::{self, DaemonPre, HandlerPre, TransformerPre, types};
use super::error::{InvalidPlugin, error_chain};
use super::journal::LogGate;
use super::plugin::*;
use super::services::HostServices;
use super::state::PluginContext;
use super::{CONTRACT_PACKAGE, Runtime};
use crate::contract::{PluginInfo, PluginKind};
use crate::grant::Grants;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use wasmtime::component::Component;

impl Runtime {
    /// Checks `bytes` and loads them as a plugin. Each check that fails says which it was:
    /// size, format, component, validation, world, version, imports, describe, kind, settings.
    pub async fn load(
        &self,
        bytes: &[u8],
        settings: PluginSettings,
        services: Arc<dyn HostServices>,
    ) -> Result<Plugin, InvalidPlugin> {
        let limit = self.config().max_plugin_bytes;
        if bytes.len() > limit {
            return Err(InvalidPlugin::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(InvalidPlugin::NotWasm);
        }
        if wasmtime::wasmparser::Parser::is_core_wasm(bytes) {
            return Err(InvalidPlugin::CoreModule);
        }
        // Compiling runs Cranelift for a while: on the blocking pool, not a tokio worker that
        // other tasks (message deliveries, the HTTP API) are waiting for. A file compiled
        // before (by hash) is not compiled again.
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let sha256 = hex::encode(digest);
        let component = match self.compiled(&sha256) {
            Some(component) => component,
            None => {
                let (engine, owned) = (self.engine().clone(), bytes.to_vec());
                let disk = self.inner.disk.clone();
                let component = tokio::task::spawn_blocking(move || {
                    if let Some(kept) = disk.as_ref().and_then(|d| d.load(&engine, &digest)) {
                        return Ok(kept);
                    }
                    let component = Component::new(&engine, &owned)?;
                    if let Some(disk) = &disk {
                        disk.store(&digest, &component);
                    }
                    Ok::<_, wasmtime::Error>(component)
                })
                .await
                .map_err(|e| InvalidPlugin::Invalid {
                    detail: format!("compiling stopped: {e}"),
                })?
                .map_err(|e| InvalidPlugin::Invalid {
                    detail: error_chain(&e),
                })?;
                self.keep_compiled(sha256.clone(), component.clone());
                component
            }
        };
        let (world, contract) = detect_world(&component, self.engine())?;
        let instance_pre =
            self.linker()
                .instantiate_pre(&component)
                .map_err(|e| InvalidPlugin::Imports {
                    detail: error_chain(&e),
                })?;
        let mismatch = |e: wasmtime::Error| InvalidPlugin::WorldMismatch {
            world: world.as_str(),
            detail: error_chain(&e),
        };
        let pre = match world {
            PluginKind::Transformer => {
                Pre::Transformer(TransformerPre::new(instance_pre).map_err(mismatch)?)
            }
            PluginKind::Handler => Pre::Handler(HandlerPre::new(instance_pre).map_err(mismatch)?),
            PluginKind::Daemon => Pre::Daemon(DaemonPre::new(instance_pre).map_err(mismatch)?),
        };
        let grants =
            Grants::new(&settings.grants).map_err(|e| InvalidPlugin::Settings(e.to_string()))?;
        if settings.memory_bytes > self.config().max_memory_bytes {
            return Err(InvalidPlugin::Settings(format!(
                "memory limit {} bytes is over the host's maximum of {} bytes",
                settings.memory_bytes,
                self.config().max_memory_bytes
            )));
        }
        if settings.max_instances == 0
            || settings.cpu_limit.is_zero()
            || settings.wall_limit().is_zero()
            || settings.max_output_bytes == 0
        {
            return Err(InvalidPlugin::Settings(
                "max_instances, the CPU and wall-clock limits and the output limit must be above zero".into(),
            ));
        }
        let log_gate = LogGate::new();
        let reservation = self.reserve(settings.max_instances)?;

        let context = |name: &str| {
            Arc::new(PluginContext {
                name: name.into(),
                config: settings.config.clone(),
                grants: grants.clone(),
                memory_limit: settings.memory_bytes,
                cpu_limit: settings.cpu_limit,
                wall_limit: settings.wall_limit(),
                max_output_bytes: settings.max_output_bytes,
                max_wait: settings.max_wait,
                log_gate: log_gate.clone(),
                services: services.clone(),
                outbound: Arc::new(super::outbound::Policy {
                    plugin: name.into(),
                    grants: grants.clone(),
                    http: self.http_client(),
                    max_output_bytes: settings.max_output_bytes,
                    memory_limit: settings.memory_bytes,
                    max_wait: settings.max_wait,
                }),
                shutdown: self.shutdown_signal(),
            })
        };
        // Ask the plugin who it is, in a sandbox like any call's, then name it.
        let provisional = settings.name.clone().unwrap_or_else(|| "(loading)".into());
        let plugin = PluginInner {
            runtime: self.clone(),
            ctx: context(&provisional),
            info: PluginInfo {
                name: provisional,
                version: String::new(),
                kind: world,
                description: String::new(),
                reusable: false,
                wants: Vec::new(),
                contract,
                size_bytes: bytes.len(),
                sha256,
            },
            pre,
            permits: Semaphore::new(settings.max_instances as usize),
            _reservation: reservation,
            idle: Mutex::new(Vec::new()),
            reuse: false,
            recycle_after: settings.recycle_after.max(1),
        };
        let loading = Plugin {
            inner: Arc::new(plugin),
        };
        let info = match loading.call(Call::Describe).await.result {
            Ok(Returned::Info(info)) => info,
            Ok(_) => unreachable!("describe returns info"),
            Err(e) => return Err(InvalidPlugin::Describe(e)),
        };
        // `describe` ran on a fresh instance that was not kept, so nothing else holds it.
        let Ok(mut plugin) = Arc::try_unwrap(loading.inner) else {
            unreachable!("no call holds a plugin that is being loaded")
        };
        let declared = PluginKind::from(info.kind);
        if declared != world {
            return Err(InvalidPlugin::KindMismatch {
                world: world.as_str(),
                declared: declared.as_str(),
            });
        }
        check_info(&info)?;
        let name = settings.name.clone().unwrap_or_else(|| info.name.clone());
        plugin.ctx = context(&name);
        plugin.reuse = settings.reuse && info.reusable;
        plugin.info = PluginInfo {
            name,
            version: info.version,
            description: info.description,
            reusable: info.reusable,
            wants: info.wants,
            ..plugin.info
        };
        Ok(Plugin {
            inner: Arc::new(plugin),
        })
    }
}

pub(super) fn check_info(info: &types::Info) -> Result<(), InvalidPlugin> {
    let valid_name = !info.name.is_empty()
        && info.name.len() <= 64
        && info
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid_name {
        return Err(InvalidPlugin::InvalidInfo(format!(
            "name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
            info.name
        )));
    }
    if info.version.is_empty() {
        return Err(InvalidPlugin::InvalidInfo(format!(
            "plugin `{}` declares no version",
            info.name
        )));
    }
    if crate::check::is_dot_segment(&info.name) || crate::check::is_dot_segment(&info.version) {
        return Err(InvalidPlugin::InvalidInfo(format!(
            "plugin `{}` declares a name or version of `.` or `..`, which a URL cannot carry",
            info.name
        )));
    }
    Grants::new(&info.wants)
        .map_err(|e| InvalidPlugin::InvalidInfo(format!("it wants a malformed grant: {e}")))?;
    Ok(())
}

/// Which world a component implements, and the contract version it was built against.
pub(super) fn detect_world(
    component: &Component,
    engine: &wasmtime::Engine,
) -> Result<(PluginKind, String), InvalidPlugin> {
    let ty = component.component_type();
    let mut contract = None;
    for (import, _) in ty.imports(engine) {
        let Some(rest) = import
            .strip_prefix(CONTRACT_PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !version.starts_with("0.1.") {
            return Err(InvalidPlugin::UnsupportedVersion {
                import: import.to_owned(),
            });
        }
        contract.get_or_insert_with(|| format!("{CONTRACT_PACKAGE}@{version}"));
    }
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let has = |name: &str| exports.contains(&name);
    let world = match () {
        _ if has("describe") && has("transform") => PluginKind::Transformer,
        _ if has("describe") && has("handle") => PluginKind::Handler,
        _ if has("describe") && has("run") => PluginKind::Daemon,
        _ => {
            return Err(InvalidPlugin::UnknownWorld {
                exports: exports.join(", "),
            });
        }
    };
    let contract =
        contract.unwrap_or_else(|| format!("{CONTRACT_PACKAGE}@{}", bindings::CONTRACT_VERSION));
    Ok((world, contract))
}
