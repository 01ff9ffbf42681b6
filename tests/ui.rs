//! The admin UI in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `tests/browser/ui.mjs`) against a real host on the embedded broker and RabbitMQ: the
//! first admin is set up, adds a RabbitMQ connection, uploads `uppercase`, creates a route,
//! sends a message and sees it upper-cased on the Consume page; a failing plugin's message is
//! dead-lettered and replayed; a bad upload names its check; a form without its CSRF token and
//! a viewer's forced upload are refused; five wrong passwords are throttled. Screenshots of
//! each main page at laptop and phone width go to `target/screenshots/`.

mod support;

use std::path::PathBuf;
use support::{Backend, TestDb, amqp_url, plugin_dir};
use wharf::config::Config;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "{chromium} is missing: install Debian's chromium (./dev test does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in tests/browser (./dev test does)"
    );
    let db = TestDb::new(Backend::Sqlite).await;
    // The UI uploads the plugins itself: none come from a folder.
    let mut config = Config::default();
    config.routes.clear();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    let host = wharf::host::start(config).await.expect("the host starts");
    let queue = format!("wharf.ui.{}", uuid::Uuid::new_v4().simple());
    let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let out = tokio::process::Command::new("node")
        .arg(browser_dir().join("ui.mjs"))
        .env("WHARF_URL", format!("http://{}", host.addr))
        .env(
            "WHARF_SETUP",
            host.setup_link
                .clone()
                .expect("a new host prints a set-up link"),
        )
        .env("WHARF_AMQP", amqp_url())
        .env("WHARF_QUEUE", &queue)
        .env("WHARF_PLUGINS", plugin_dir())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("running node (the browser tests need Node.js)");
    host.stop().await;
    support::delete_amqp_queues(&[queue]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every step passed"), "{stdout}");
    for page in [
        "dashboard",
        "connections",
        "plugins",
        "route",
        "routes",
        "send",
        "consume",
        "dead-letters",
        "users",
        "login",
    ] {
        for size in ["laptop", "phone"] {
            let shot = screenshots.join(format!("{page}-{size}.png"));
            assert!(shot.is_file(), "{} was not written", shot.display());
        }
    }
}
