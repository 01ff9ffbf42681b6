//! README.md runs as written: every shell block, in order, as a new user would type it, against
//! a host started as `./dev run` starts it (the embedded defaults, from the repository's root),
//! here on a free port and a database of its own. `./dev run ARGS` is the built `wharf ARGS`
//! and `127.0.0.1:8080` the host's address; nothing else is changed. Each command must exit 0,
//! or with the status its comment names (`(exit status 1)`). A block right after a line
//! `<!-- not run by tests/readme.rs … -->` is skipped (the two commands that start a host and
//! run the tests).
//!
//! The guides for Python and JavaScript plugins (`sdk/python-plugin/README.md`,
//! `sdk/js/README.md`) run the same way against the same host, each from a folder of its own
//! with `wharf` on the PATH, as a plugin author outside the repository would type them;
//! componentize-py comes from the virtualenv `./dev` installs.

mod support;

use std::path::{Path, PathBuf};

/// One command of the README: the line it starts on, its text (continuation lines joined),
/// and the exit status it should end with.
#[derive(Debug)]
struct Command {
    line: usize,
    text: String,
    status: i32,
}

/// The commands of every shell block of `markdown`, in order.
fn commands(markdown: &str) -> Vec<Command> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut skip = false;
    let mut pending: Option<Command> = None;
    let mut previous = "";
    for (index, line) in markdown.lines().enumerate() {
        if !in_block {
            if line.trim_start().starts_with("```sh") {
                in_block = true;
                skip = previous.starts_with("<!-- not run by tests/readme.rs");
            }
            previous = line;
            continue;
        }
        if line.trim_start().starts_with("```") {
            in_block = false;
            previous = line;
            continue;
        }
        previous = line;
        if skip {
            continue;
        }
        match &mut pending {
            Some(command) => {
                command.text.push('\n');
                command.text.push_str(line);
            }
            None => {
                if line.trim().is_empty() || line.trim_start().starts_with('#') {
                    continue;
                }
                pending = Some(Command {
                    line: index + 1,
                    text: line.to_owned(),
                    status: 0,
                });
            }
        }
        if !line.trim_end().ends_with('\\') {
            let mut command = pending.take().expect("a command is pending");
            if let Some(at) = command.text.find("(exit status ") {
                let digits: String = command.text[at + 13..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                command.status = digits.parse().expect("an exit status");
            }
            commands.push(command);
        }
    }
    commands
}

/// A bash script that runs `commands` in one shell (so a variable set by one is there for the
/// next, as in a terminal), stopping at the first that ends with another status.
fn script(commands: &[Command], file: &str, wharf: &Path, address: &str) -> String {
    let mut script = String::from("set -u\n");
    for command in commands {
        let text = command
            .text
            .replace("./dev run ", &format!("{} ", wharf.display()))
            .replace("127.0.0.1:8080", address);
        script.push_str(&format!(
            "printf '%s\\n' {quoted}\n{text}\nstatus=$?\nif [ \"$status\" -ne {want} ]; then echo \"{file}:{line}: exit status $status, not {want}\" >&2; exit 1; fi\n",
            quoted = shell_quote(&format!("$ {file}:{}: {}", command.line, command.text)),
            want = command.status,
            line = command.line,
        ));
    }
    script
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_readme_parser_reads_commands_their_continuations_and_expected_statuses() {
    let markdown = "text\n<!-- not run by tests/readme.rs: x -->\n```sh\n./dev test\n```\n\
        ```sh\n# a comment\n./dev run a \\\n    b   # joined\n./dev run c   # fails (exit status 2)\n```\n\
        ```toml\nnot = \"shell\"\n```\n";
    let found = commands(markdown);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].text, "./dev run a \\\n    b   # joined");
    assert_eq!((found[0].line, found[0].status), (8, 0));
    assert_eq!((found[1].line, found[1].status), (10, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs_as_written() {
    // The README adds a RabbitMQ connection; other tests must not stop the broker meanwhile.
    let _shared = support::RABBIT.read().await;
    let wharf = PathBuf::from(env!("CARGO_BIN_EXE_wharf"));
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let address = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("host.log")).unwrap();
    let mut host = std::process::Command::new(&wharf)
        .arg("serve")
        .current_dir(root())
        .env("WHARF_SERVER__LISTEN", &address)
        .env(
            "WHARF_SERVER__DATABASE",
            format!("sqlite://{}/wharf.db", dir.path().display()),
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting wharf serve");
    support::wait_ready(port);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let readme_commands = commands(&readme);
    assert!(
        readme_commands.len() > 50,
        "the README's commands: {readme_commands:?}"
    );
    let mut transcript = String::new();
    let mut failed = run(
        &readme_commands,
        "README.md",
        &root(),
        &wharf,
        &address,
        &mut transcript,
    )
    .await;
    // The plugin guides, each from a folder of its own, with `wharf` on the PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(&wharf, bin.join("wharf")).unwrap();
    for guide in ["sdk/python-plugin/README.md", "sdk/js/README.md"] {
        if failed {
            break;
        }
        let guide_commands = commands(&std::fs::read_to_string(root().join(guide)).unwrap());
        assert!(guide_commands.len() >= 5, "{guide}: {guide_commands:?}");
        let work = tempfile::tempdir().unwrap();
        failed = run(
            &guide_commands,
            guide,
            work.path(),
            &bin.join("wharf"),
            &address,
            &mut transcript,
        )
        .await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status();
    let _ = host.wait();
    // Shown with `--nocapture`: every command and what it printed.
    println!("{transcript}");
    assert!(
        !failed,
        "a README command failed:\n{transcript}\nthe host's log:\n{}",
        std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default()
    );
}

/// Runs `commands` of `file` in one bash in `cwd`, with `wharf` on the PATH and nothing else
/// a newcomer's shell lacks (`wharf plugin build` finds the toolchains `./dev` installed);
/// appends what it printed to `transcript` and answers whether one failed.
async fn run(
    commands: &[Command],
    file: &str,
    cwd: &Path,
    wharf: &Path,
    address: &str,
    transcript: &mut String,
) -> bool {
    let path = format!(
        "{}:{}",
        wharf.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script(commands, file, wharf, address))
        .current_dir(cwd)
        .env("WHARF_URL", format!("http://{address}"))
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    transcript.push_str(&String::from_utf8_lossy(&out.stdout));
    transcript.push('\n');
    transcript.push_str(&String::from_utf8_lossy(&out.stderr));
    !out.status.success()
}
