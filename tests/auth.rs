//! Users, roles and API tokens: every `/api/v1` call presents a live token and is checked
//! against its role; the CLI on the host's machine finds the token the host keeps for it; the
//! `user` and `token` commands work on the database with or without a host running.

mod support;

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use support::{Backend, TestDb};
use wharf::auth::{Role, new_token, verify_password};
use wharf::config::Config;
use wharf::host::{RunningHost, start};
use wharf::store::Store;

async fn host(db: &TestDb) -> RunningHost {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.database = db.url.clone();
    config.server.plugin_dir = None;
    // Nor the defaults' heartbeat daemon and its plugin, which come from that folder.
    config.daemons.clear();
    config.plugins.clear();
    config.routes.clear();
    config.validate().unwrap();
    start(config).await.expect("the host starts")
}

/// Runs `wharf ARGS` with `stdin` as its standard input.
fn wharf(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running wharf");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn token(store: &Store, name: &str, role: Role) -> String {
    let (token, digest) = new_token();
    store
        .add_token(name, role, &digest, false, 0)
        .await
        .unwrap();
    token
}

async fn status(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_guard_every_api_call() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db).await;
    let store = Store::open(&db.url).await.unwrap();
    let base = format!("http://{}/api/v1/queues/local/roles", host.addr);
    let (messages, take) = (format!("{base}/messages"), format!("{base}/take"));
    let publish =
        |client: &reqwest::Client| client.post(&messages).json(&json!({ "payload": "x" }));

    // No token, or one that is not live: 401, saying what to send.
    let anonymous = reqwest::Client::new();
    let response = anonymous.get(&base).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    for (what, request) in [
        ("publish", publish(&anonymous)),
        ("take", anonymous.post(&take)),
        ("purge", anonymous.delete(&messages)),
        (
            "a made-up token",
            publish(&support::client_with_token("wharf_nope")),
        ),
    ] {
        assert_eq!(status(request).await.0, 401, "{what}");
    }
    // Health and readiness stay open.
    let health = reqwest::get(format!("http://{}/healthz", host.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // A viewer reads, and is refused every change.
    let viewer = support::client_with_token(&token(&store, "dashboard", Role::Viewer).await);
    assert_eq!(status(viewer.get(&base)).await.0, 200);
    assert_eq!(status(viewer.get(&messages)).await.0, 200);
    for (what, request) in [
        ("publish", publish(&viewer)),
        ("take", viewer.post(&take)),
        ("purge", viewer.delete(&messages)),
    ] {
        let (code, body) = status(request).await;
        assert_eq!(code, 403, "{what}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("viewer"),
            "{body}"
        );
    }

    // An operator publishes, takes and purges; so does the admin token the host keeps.
    let operator_token = token(&store, "billing", Role::Operator).await;
    let operator = support::client_with_token(&operator_token);
    assert_eq!(status(publish(&operator)).await.0, 201);
    let (code, taken) = status(operator.post(&take)).await;
    assert_eq!((code, taken[0]["payload"].as_str()), (200, Some("x")));
    assert_eq!(status(operator.delete(&messages)).await.0, 200);
    let admin = support::client_with_token(&support::local_token(host.addr));
    assert_eq!(status(publish(&admin)).await.0, 201);

    // Revoked (through the CLI, on the database, while the host runs): refused at once.
    let out = wharf(&["token", "revoke", "billing", "--database", &db.url], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(status(publish(&operator)).await.0, 401);

    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_the_token_its_host_keeps_for_it() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db).await;
    let url = format!("http://{}", host.addr);
    let path = wharf::auth::local_token_path(host.addr).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "only the host's user reads {}",
        path.display()
    );

    // No --token: the file is found by the host's address.
    let out = wharf(&["publish", "local:cli", "hello", "--url", &url], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wharf(&["consume", "local:cli", "--url", &url], "");
    assert_eq!(text(&out.stdout).trim(), "hello", "{}", text(&out.stderr));
    // A token given explicitly wins, and a bad one says what is wrong.
    let out = wharf(
        &[
            "publish",
            "local:cli",
            "x",
            "--url",
            &url,
            "--token",
            "wharf_nope",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    host.stop().await;
    assert!(!path.exists(), "the token file goes with the host");
    let store = Store::open(&db.url).await.unwrap();
    let tokens = store.tokens().await.unwrap();
    assert!(
        tokens.iter().all(|t| !t.local || t.revoked_ms.is_some()),
        "the CLI's token is revoked when the host stops: {tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_are_managed_on_the_database() {
    let db = TestDb::new(Backend::Sqlite).await;
    let database = ["--database", db.url.as_str()];
    let run = |args: &[&str], stdin: &str| {
        let mut all = args.to_vec();
        all.extend(database);
        wharf(&all, stdin)
    };

    // The password comes from standard input (or a prompt), never from an argument.
    let out = run(
        &["user", "add", "alice", "--role", "admin"],
        "correct horse\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &["user", "add", "alice", "--role", "viewer"],
        "another one\n",
    );
    assert!(
        text(&out.stderr).contains("exists already"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["user", "add", "bob", "--role", "viewer"], "short\n");
    assert!(
        text(&out.stderr).contains("at least 8"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &["user", "add", "bob smith", "--role", "viewer"],
        "long enough\n",
    );
    assert!(!out.status.success() && text(&out.stderr).contains("name"));
    let out = run(&["user", "add", "bob", "--role", "root"], "long enough\n");
    assert!(text(&out.stderr).contains("admin, operator or viewer"));
    let out = run(
        &["user", "add", "bob", "--role", "operator"],
        "long enough\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&["user", "list"], "");
    assert_eq!(text(&out.stdout), "alice\tadmin\nbob\toperator\n");

    let store = Store::open(&db.url).await.unwrap();
    let (hash, role) = store.user_login("alice").await.unwrap().unwrap();
    assert_eq!(role, Role::Admin);
    assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"));
    assert!(verify_password("correct horse", &hash));

    let out = run(&["user", "passwd", "alice"], "battery staple\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (hash, _) = store.user_login("alice").await.unwrap().unwrap();
    assert!(verify_password("battery staple", &hash) && !verify_password("correct horse", &hash));
    assert!(run(&["user", "remove", "bob"], "").status.success());
    assert!(!run(&["user", "remove", "bob"], "").status.success());

    // A token is printed once; the database keeps only its digest.
    let out = run(
        &["token", "create", "--name", "etl", "--role", "operator"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("wharf_"), "{token}");
    assert_eq!(
        store
            .token_caller(&wharf::auth::token_digest(&token))
            .await
            .unwrap(),
        Some(("etl".to_string(), Role::Operator))
    );
    let out = run(&["token", "list"], "");
    let listed = text(&out.stdout);
    assert!(
        listed.contains("etl\toperator") && !listed.contains(&token),
        "{listed}"
    );
    let out = run(&["token", "revoke", "etl"], "");
    assert!(out.status.success());
    assert!(text(&run(&["token", "list"], "").stdout).contains("(revoked)"));
    assert!(!run(&["token", "revoke", "etl"], "").status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_sign_in_present_their_csrf_token_and_are_throttled() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db).await;
    let store = Store::open(&db.url).await.unwrap();
    for (name, role) in [("carol", Role::Operator), ("dave", Role::Viewer)] {
        let hash = wharf::auth::hash_password("long password").unwrap();
        assert!(store.add_user(name, &hash, role, 0).await.unwrap());
    }
    let api = format!("http://{}/api/v1", host.addr);
    let client = reqwest::Client::new();
    let login = |name: &str, password: &str| {
        client
            .post(format!("{api}/login"))
            .json(&json!({ "name": name, "password": password }))
    };
    let messages = format!("{api}/queues/local/signed/messages");

    let (code, body) = status(login("carol", "wrong password")).await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (code, _) = status(login("nobody", "long password")).await;
    assert_eq!(code, 401, "an unknown name answers like a wrong password");
    let (code, body) = status(
        client
            .post(format!("{api}/login"))
            .json(&json!({ "name": "carol", "pasword": "x" })),
    )
    .await;
    assert_eq!(code, 400, "{body}");

    // Signed in: an HttpOnly, SameSite cookie and a CSRF token.
    let response = login("carol", "long password").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let session = set_cookie.split(';').next().unwrap().to_owned();
    let signed_in: Value = response.json().await.unwrap();
    // Behind a proxy that ended TLS, the cookie is Secure.
    let behind_tls = login("carol", "long password")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        behind_tls.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure"),
        "over TLS the cookie is Secure"
    );
    assert_eq!(signed_in["role"], "operator");
    let csrf = signed_in["csrf"].as_str().unwrap().to_owned();

    let with_session = |request: reqwest::RequestBuilder| request.header("cookie", &session);
    let publish = || with_session(client.post(&messages)).json(&json!({ "payload": "x" }));
    assert_eq!(status(with_session(client.get(&messages))).await.0, 200);
    let (code, body) = status(publish()).await;
    assert_eq!(code, 403, "a change without the CSRF token: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("CSRF"));
    assert_eq!(
        status(publish().header("x-csrf-token", "forged")).await.0,
        403
    );
    assert_eq!(status(publish().header("x-csrf-token", &csrf)).await.0, 201);

    // A password change signs the user out everywhere.
    let out = wharf(
        &["user", "passwd", "carol", "--database", &db.url],
        "new long password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(status(with_session(client.get(&messages))).await.0, 401);

    // Signing out ends the session.
    let response = login("dave", "long password").send().await.unwrap();
    let session = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let read = || client.get(&messages).header("cookie", &session);
    assert_eq!(status(read()).await.0, 200);
    let (code, _) = status(
        client
            .post(format!("{api}/logout"))
            .header("cookie", &session),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(status(read()).await.0, 401);

    // Five wrong passwords, then even the right one waits.
    for _ in 0..5 {
        assert_eq!(status(login("dave", "guess guess")).await.0, 401);
    }
    let response = login("dave", "long password").send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    // Another user is not held back by dave's failures.
    let response = login("carol", "new long password").send().await.unwrap();
    assert_eq!(response.status(), 200);

    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_users_and_tokens_through_the_api() {
    let db = TestDb::new(Backend::Sqlite).await;
    let host = host(&db).await;
    let store = Store::open(&db.url).await.unwrap();
    let api = format!("http://{}/api/v1", host.addr);
    let admin = support::client_with_token(&support::local_token(host.addr));
    let operator = support::client_with_token(&token(&store, "ops", Role::Operator).await);

    // Only an admin reads or changes users and tokens.
    for path in ["users", "tokens"] {
        let (code, body) = status(operator.get(format!("{api}/{path}"))).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert_eq!(
            status(reqwest::Client::new().get(format!("{api}/{path}")))
                .await
                .0,
            401
        );
    }
    let new_user = |doc: Value| admin.post(format!("{api}/users")).json(&doc);
    let (code, body) = status(new_user(json!({
        "name": "erin", "password": "long password", "role": "viewer"
    })))
    .await;
    assert_eq!(
        (code, body["role"].as_str()),
        (201, Some("viewer")),
        "{body}"
    );
    for (doc, field) in [
        (
            json!({ "name": "x y", "password": "long password", "role": "viewer" }),
            "name",
        ),
        (
            json!({ "name": "frank", "password": "short", "role": "viewer" }),
            "password",
        ),
        (
            json!({ "name": "frank", "password": "long password", "role": "root" }),
            "role",
        ),
    ] {
        let (code, body) = status(new_user(doc)).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    let (code, body) = status(new_user(
        json!({ "name": "frank", "pasword": "x", "role": "viewer" }),
    ))
    .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = status(new_user(json!({
        "name": "erin", "password": "long password", "role": "admin"
    })))
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (_, users) = status(admin.get(format!("{api}/users"))).await;
    assert_eq!(users[0]["name"], "erin", "{users}");
    assert!(users[0].get("password_hash").is_none(), "{users}");

    // A token made through the API works at once, and is refused once revoked.
    let (code, made) = status(
        admin
            .post(format!("{api}/tokens"))
            .json(&json!({ "name": "etl", "role": "operator" })),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    let etl = support::client_with_token(made["token"].as_str().unwrap());
    let publish = || {
        etl.post(format!("{api}/queues/local/etl/messages"))
            .json(&json!({ "payload": "x" }))
    };
    assert_eq!(status(publish()).await.0, 201);
    let (_, tokens) = status(admin.get(format!("{api}/tokens"))).await;
    assert!(
        !tokens.to_string().contains(made["token"].as_str().unwrap()),
        "a listed token never shows the token: {tokens}"
    );
    let id = made["id"].as_str().unwrap();
    assert_eq!(
        status(admin.delete(format!("{api}/tokens/{id}"))).await.0,
        200
    );
    assert_eq!(status(publish()).await.0, 401);
    assert_eq!(
        status(admin.delete(format!("{api}/tokens/{id}"))).await.0,
        404
    );
    assert_eq!(
        status(admin.delete(format!("{api}/users/erin"))).await.0,
        204
    );
    assert_eq!(
        status(admin.delete(format!("{api}/users/erin"))).await.0,
        404
    );

    host.stop().await;
}
