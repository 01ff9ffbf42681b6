//! Plugin projects, whatever their language: `wharf plugin new` writes one from a template,
//! `wharf plugin build` runs its build command, and `wharf plugin test` with no file runs the
//! tests of its manifest, `wharf-plugin.toml`, on what the build made.
//!
//! A project carries everything it builds from: the contract (`wit/plugin.wit`) and the SDK
//! of its language, copied in by `plugin new` from the ones this binary was built with, so it
//! builds outside Wharf's repository and keeps building against the contract it was made for.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The manifest's file name, at the root of every plugin project.
pub const MANIFEST: &str = "wharf-plugin.toml";
/// The componentize-py the Python template is tested with (`pip install componentize-py==…`).
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// The componentize-js the JavaScript template's package.json pins.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// The preview2-shim componentize-js imports at build time without declaring it.
pub const PREVIEW2_SHIM: &str = "0.17.4";

/// A plugin project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// What to do when the build command could not be found or failed.
    fn hint(self) -> String {
        match self {
            Lang::Rust => "Rust plugins need the wasm32-wasip2 target: `rustup target add wasm32-wasip2`".into(),
            Lang::Python => format!(
                "Python plugins are built by componentize-py: `pip install componentize-py=={COMPONENTIZE_PY}`"
            ),
            Lang::Js => "JavaScript plugins are built by componentize-js, which the build installs with npm (Node.js 20 or later)".into(),
        }
    }
}

/// The world a project implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Transformer,
    Handler,
    Daemon,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Transformer => "transformer",
            Kind::Handler => "handler",
            Kind::Daemon => "daemon",
        }
    }
}

/// `wharf-plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub lang: Lang,
    pub kind: Kind,
    pub build: Build,
    /// Run by `wharf plugin test` in the project.
    #[serde(default, rename = "test")]
    pub tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Run with `sh -c` in the project's folder.
    pub command: String,
    /// The component it makes, relative to the project's folder.
    pub output: PathBuf,
}

/// One test of a manifest: inputs and what must come out, as `plugin test`'s flags take them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Input messages: JSON objects or payload text, run in order.
    pub input: Vec<String>,
    /// Expected outputs over all inputs, in order; none means no output (a filter).
    #[serde(default)]
    pub expect: Vec<String>,
    /// Each input must fail with this error instead (`Rejected`, `Retry`, …).
    pub expect_error: Option<String>,
    /// Grants for the run; by default what the plugin asks for.
    pub grants: Option<Vec<String>>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// For a daemon: the `local:` queue the inputs are put on before it starts.
    pub queue: Option<String>,
    /// For a daemon: the `local:` queue whose messages are compared with `expect`.
    pub expect_on: Option<String>,
    /// For a daemon: how long it runs (seconds; 2 by default).
    pub for_secs: Option<u64>,
}

impl Manifest {
    /// Reads `DIR/wharf-plugin.toml`.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            bail!(
                "{} has no {MANIFEST}: run this in a plugin project (`wharf plugin new` makes one), or name the .wasm file",
                display_dir(dir)
            );
        }
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::file(&path))
            .extract()
            .with_context(|| format!("{} is not a valid manifest", path.display()))
    }
}

fn display_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() || dir == Path::new(".") {
        "this folder".into()
    } else {
        dir.display().to_string()
    }
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: lower-case letters, digits and `-`, starting with a letter. Also the
    /// project's folder unless --dir says otherwise.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The world it implements.
    #[arg(long, value_enum, default_value = "transformer")]
    kind: Kind,
    /// Where to make the project (must not exist, or be empty); by default ./NAME.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project's folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// Checks a plugin name for use as a file, crate, queue and plugin name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_well || !rest_ok || name.len() > 64 || name.ends_with('-') {
        bail!(
            "`{name}` is not a plugin name: use lower-case letters, digits and `-` (at most 64), starting with a letter"
        );
    }
    Ok(())
}

/// The files of a new project, as (path, contents).
fn project_files(name: &str, lang: Lang, kind: Kind) -> Vec<(String, String)> {
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{kind}}", kind.as_str())
            .replace("{{sdk_version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{componentize_js_version}}", COMPONENTIZE_JS)
            .replace("{{preview2_shim_version}}", PREVIEW2_SHIM)
            // A transformer has no side effects; handlers and daemons may `fetch`.
            .replace(
                "{{js_disabled}}",
                match kind {
                    Kind::Transformer => "http fetch-event",
                    _ => "fetch-event",
                },
            )
    };
    let mut files = vec![(
        "wit/plugin.wit".to_owned(),
        include_str!("../../../wit/plugin.wit").to_owned(),
    )];
    // The WASI packages the contract imports (outbound HTTP), as wasmtime-wasi-http has them.
    files.extend(
        [
            ("cli", include_str!("../../../wit/deps/cli.wit")),
            ("clocks", include_str!("../../../wit/deps/clocks.wit")),
            (
                "filesystem",
                include_str!("../../../wit/deps/filesystem.wit"),
            ),
            ("http", include_str!("../../../wit/deps/http.wit")),
            ("io", include_str!("../../../wit/deps/io.wit")),
            ("random", include_str!("../../../wit/deps/random.wit")),
            ("sockets", include_str!("../../../wit/deps/sockets.wit")),
        ]
        .map(|(name, text)| (format!("wit/deps/{name}.wit"), text.to_owned())),
    );
    let (command, source) = match lang {
        Lang::Rust => {
            files.extend([
                (
                    "Cargo.toml".into(),
                    fill(include_str!("../../../sdk/templates/rust/Cargo.toml")),
                ),
                (
                    ".cargo/config.toml".into(),
                    include_str!("../../../sdk/templates/rust/cargo-config.toml").into(),
                ),
                (
                    "wharf-sdk/Cargo.toml".into(),
                    fill(include_str!("../../../sdk/templates/rust/sdk-Cargo.toml")),
                ),
                (
                    "wharf-sdk/src/lib.rs".into(),
                    include_str!("../../../sdk/src/lib.rs").into(),
                ),
                (
                    "wharf-sdk/src/bindings.rs".into(),
                    include_str!("../../../sdk/src/bindings.rs").into(),
                ),
                (
                    "wharf-sdk/src/message.rs".into(),
                    include_str!("../../../sdk/src/message.rs").into(),
                ),
                (
                    "wharf-sdk/src/http.rs".into(),
                    include_str!("../../../sdk/src/http.rs").into(),
                ),
            ]);
            let source = match kind {
                Kind::Transformer => include_str!("../../../sdk/templates/rust/transformer.rs"),
                Kind::Handler => include_str!("../../../sdk/templates/rust/handler.rs"),
                Kind::Daemon => include_str!("../../../sdk/templates/rust/daemon.rs"),
            };
            files.push(("src/lib.rs".into(), fill(source)));
            (
                format!(
                    "cargo build --release && cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_name}.wasm\" {name}.wasm"
                ),
                "src/lib.rs",
            )
        }
        Lang::Python => {
            files.extend([
                (
                    "wharf_plugin/__init__.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/__init__.py").into(),
                ),
                (
                    "wharf_plugin/log.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/log.py").into(),
                ),
                (
                    "wharf_plugin/config.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/config.py").into(),
                ),
                (
                    "wharf_plugin/host.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/host.py").into(),
                ),
                (
                    "wharf_plugin/daemon.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/daemon.py").into(),
                ),
                (
                    "wharf_plugin/http.py".into(),
                    include_str!("../../../sdk/python-plugin/wharf_plugin/http.py").into(),
                ),
            ]);
            let source = match kind {
                Kind::Transformer => include_str!("../../../sdk/templates/python/transformer.py"),
                Kind::Handler => include_str!("../../../sdk/templates/python/handler.py"),
                Kind::Daemon => include_str!("../../../sdk/templates/python/daemon.py"),
            };
            files.push(("app.py".into(), fill(source)));
            (
                format!(
                    "componentize-py -d wit -w {} componentize -p . app -o {name}.wasm",
                    kind.as_str()
                ),
                "app.py",
            )
        }
        Lang::Js => {
            files.extend([
                (
                    "package.json".into(),
                    fill(include_str!("../../../sdk/templates/js/package.json")),
                ),
                (
                    "wharf/wharf.js".into(),
                    include_str!("../../../sdk/js/wharf.js").into(),
                ),
                (
                    "wharf/host.js".into(),
                    include_str!("../../../sdk/js/host.js").into(),
                ),
                (
                    "wharf/daemon.js".into(),
                    include_str!("../../../sdk/js/daemon.js").into(),
                ),
            ]);
            let source = match kind {
                Kind::Transformer => include_str!("../../../sdk/templates/js/transformer.js"),
                Kind::Handler => include_str!("../../../sdk/templates/js/handler.js"),
                Kind::Daemon => include_str!("../../../sdk/templates/js/daemon.js"),
            };
            files.push(("plugin.js".into(), fill(source)));
            (
                "npm install --no-audit --no-fund --loglevel=error && npm run --silent build"
                    .into(),
                "plugin.js",
            )
        }
    };
    let tests = match kind {
        Kind::Transformer => "[[test]]\ninput = [\"hello\"]\nexpect = [\"HELLO\"]\n\n\
             # An empty message is filtered out: no output.\n[[test]]\ninput = [\"\"]\nexpect = []\n"
            .to_owned(),
        Kind::Handler => "[[test]]\ninput = ['{\"payload\": \"world\", \"reply_to\": \"greetings\"}']\n\
             expect = ['{\"payload\": \"Hello, world!\", \"topic\": \"greetings\"}']\n\n\
             # No name: the message is rejected (dead-lettered at once, not retried).\n\
             [[test]]\ninput = [\"\"]\nexpect_error = \"Rejected\"\n"
            .to_owned(),
        Kind::Daemon => format!(
            "# The daemon runs for for_secs against an embedded broker in memory, with the\n\
             # inputs on `queue`; then what is on `expect_on` must match `expect`.\n\
             [[test]]\nqueue = \"local:{name}.in\"\ninput = [\"hello\", \"world\"]\n\
             expect_on = \"local:{name}.out\"\nexpect = [\"HELLO\", \"WORLD\"]\nfor_secs = 2\n"
        ),
    };
    files.push((
        MANIFEST.into(),
        format!(
            "# A Wharf plugin project. `wharf plugin build` runs the build command in this folder;\n\
             # `wharf plugin test` runs the tests below on what it made, with no broker.\n\
             name = \"{name}\"\nlang = \"{}\"\nkind = \"{}\"\n\n[build]\ncommand = '{command}'\n\
             output = \"{name}.wasm\"\n\n{tests}",
            lang.as_str(),
            kind.as_str()
        ),
    ));
    files.push((
        "README.md".into(),
        fill(&format!(
            "# {{{{name}}}}\n\nA Wharf {{{{kind}}}} in {}. Its code is in `{source}`; `wit/` is the plugin \
             contract it builds against and `{}` the SDK, both copied in by `wharf plugin new`.\n\n\
             ```sh\nwharf plugin build     # {}\nwharf plugin test      # the tests in {MANIFEST}\n\
             wharf plugin install {{{{name}}}}.wasm   # onto a running host\n```\n\n{}",
            match lang {
                Lang::Rust => "Rust",
                Lang::Python => "Python",
                Lang::Js => "JavaScript",
            },
            match lang {
                Lang::Rust => "wharf-sdk/",
                Lang::Python => "wharf_plugin/",
                Lang::Js => "wharf/",
            },
            command,
            match lang {
                Lang::Rust => "Building needs the `wasm32-wasip2` target (`rustup target add wasm32-wasip2`).\n".to_owned(),
                Lang::Python => format!(
                    "Building needs componentize-py (`pip install componentize-py=={COMPONENTIZE_PY}`).\n"
                ),
                Lang::Js => "Building needs Node.js 20 or later; the build installs componentize-js with npm.\n".to_owned(),
            }
        )),
    ));
    files.push((
        ".gitignore".into(),
        match lang {
            Lang::Rust => "/target\n*.wasm\n",
            Lang::Python => "__pycache__/\n*.wasm\n",
            Lang::Js => "node_modules/\n*.wasm\n",
        }
        .into(),
    ));
    files
}

/// `wharf plugin new`.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not empty: choose another --dir",
                dir.display()
            );
        }
    }
    for (path, contents) in project_files(&args.name, args.lang, args.kind) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "made {} ({} {}) in {}",
        args.name,
        args.lang.as_str(),
        args.kind.as_str(),
        dir.display()
    );
    println!(
        "next: cd {} && wharf plugin build && wharf plugin test",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `wharf plugin build`: runs the manifest's command, then checks that what it made is the
/// plugin the manifest names.
/// The PATH a build runs with: the caller's, then the toolchains `./dev` installs
/// (`$WHARF_TOOLS_DIR`, else `~/.cache/wharf-tools`: componentize-py in `python/bin`), so a
/// newcomer's shell builds a Python plugin without adding them to its own PATH.
fn build_path() -> std::ffi::OsString {
    let tools = std::env::var_os("WHARF_TOOLS_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/wharf-tools"))
        });
    let mut paths: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(tools) = tools {
        paths.push(tools.join("python/bin"));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

pub async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::read(&args.dir)?;
    eprintln!(
        "building {} ({}): {}",
        manifest.name,
        manifest.lang.as_str(),
        manifest.build.command
    );
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&manifest.build.command)
        .current_dir(&args.dir)
        .env("PATH", build_path())
        .status()
        .context("cannot run sh")?;
    if !status.success() {
        let code = status
            .code()
            .map_or("a signal".into(), |c| format!("exit status {c}"));
        bail!(
            "the build command failed ({code}). {}",
            manifest.lang.hint()
        );
    }
    let output = args.dir.join(&manifest.build.output);
    if !output.is_file() {
        bail!(
            "the build command succeeded but made no {}: check `output` in {MANIFEST}",
            output.display()
        );
    }
    let info = super::load::inspect(&output).await?;
    if info.name != manifest.name || info.kind.as_str() != manifest.kind.as_str() {
        bail!(
            "{} says it is the {} `{}`, but {MANIFEST} names the {} `{}`",
            output.display(),
            info.kind.as_str(),
            info.name,
            manifest.kind.as_str(),
            manifest.name
        );
    }
    println!(
        "built {} {} ({}): {}, {} bytes",
        info.name,
        info.version,
        info.kind.as_str(),
        output.display(),
        info.size_bytes
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-plugin", "p2"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "-a",
            "A",
            "my_plugin",
            "a-",
            "a b",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_template_has_a_manifest_that_parses() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Transformer, Kind::Handler, Kind::Daemon] {
                let files = project_files("my-plugin", lang, kind);
                let (_, text) = files.iter().find(|(p, _)| p == MANIFEST).unwrap();
                use figment::providers::Format;
                let manifest: Manifest =
                    figment::Figment::from(figment::providers::Toml::string(text))
                        .extract()
                        .unwrap_or_else(|e| panic!("{lang:?} {kind:?}: {e}\n{text}"));
                assert_eq!((manifest.lang, manifest.kind), (lang, kind));
                assert_eq!(manifest.build.output, PathBuf::from("my-plugin.wasm"));
                assert!(!manifest.tests.is_empty());
                assert!(
                    files.iter().all(|(_, text)| !text.contains("{{")),
                    "{lang:?} {kind:?} left a placeholder"
                );
            }
        }
    }
}
