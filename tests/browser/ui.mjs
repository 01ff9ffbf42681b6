// The admin UI in a real headless Chromium, against a running host (started by tests/ui.rs).
// Each step asserts what a person would see; any failure exits non-zero with the step's name.
//
// Environment: WHARF_URL (the host), WHARF_AMQP (RabbitMQ URL), WHARF_QUEUE (a fresh RabbitMQ
// queue name), WHARF_LEASES (two lease ids a client holds on local:held.jobs), WHARF_STREAM (a lease stream open on local:held.stream), WHARF_PLUGINS (folder of built .wasm files), SCREENSHOTS (folder to write to),
// CHROMIUM (the browser binary; default /usr/bin/chromium).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.WHARF_URL;
const amqp = process.env.WHARF_AMQP;
const queue = process.env.WHARF_QUEUE;
const plugins = process.env.WHARF_PLUGINS;
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

let step = "starting";
function expect(condition, what) {
  if (!condition) throw new Error(`${step}: ${what}`);
}
async function text(page) {
  return await page.locator("main").innerText();
}
async function see(page, wanted, timeout = 10000) {
  await page.locator("main", { hasText: wanted }).waitFor({ timeout }).catch(async () => {
    throw new Error(`${step}: expected to see ${JSON.stringify(wanted)}; the page says: ${await text(page)}`);
  });
}
// Submits the form holding `selector` and waits for the page it leads to.
async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}
async function shoot(page, name) {
  for (const [size, viewport] of [["laptop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
    await page.setViewportSize(viewport);
    await page.screenshot({ path: join(shots, `${name}-${size}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

try {
  const admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await admin.newPage();

  step = "first admin set-up, with the link the host printed";
  await page.goto(base + "/");
  expect(page.url().endsWith("/login"), `an empty host shows the sign-in page, not ${page.url()}`);
  await see(page, "No admin yet");
  await page.goto(base + "/setup");
  await see(page, "Open the set-up link");
  await page.goto(process.env.WHARF_SETUP);
  await page.fill("#name", "ada");
  await page.fill("#password", "correct horse battery");
  await submit(page, "button[type=submit]");
  await see(page, "Dashboard");
  await shoot(page, "dashboard");

  step = "a RabbitMQ connection";
  await page.goto(base + "/connections");
  await page.fill("#name", "rabbit");
  await page.selectOption("#kind", "amqp");
  await page.fill("#f-amqp-url", amqp);
  await submit(page, "form.stack button[type=submit]:not([formaction])");
  await see(page, "Connection rabbit added");
  expect(!(await text(page)).includes("guest:guest"), "the password is not shown back");
  await shoot(page, "connections");

  step = "editing the connection keeps its hidden password";
  await Promise.all([page.waitForNavigation(), page.click("a[href='/connections/rabbit']")]);
  expect((await page.inputValue("#url")).includes("***"), "the URL is shown with its password hidden");
  const definition = JSON.parse(await page.inputValue("#definition"));
  definition.heartbeat_s = 20;
  await page.fill("#definition", JSON.stringify(definition));
  await submit(page, "main button[type=submit]");
  await see(page, "Saved");
  let up = false;
  for (let i = 0; i < 40 && !up; i++) {
    up = (await text(page)).includes("State: up");
    if (!up) {
      await page.waitForTimeout(250);
      await page.reload();
    }
  }
  expect(up, "the connection, opened again with its stored password, is up");
  await page.goto(base + "/connections");
  await submit(page, "form[action^='/connections/rabbit/test?'] button");
  await see(page, "rabbit: works");

  step = "an HTTP connection";
  await page.goto(base + "/connections");
  await page.fill("#name", "hooks");
  await page.selectOption("#kind", "http");
  await page.fill("#f-http-base_url", "http://user:secret@127.0.0.1:9/hooks/");
  await page.check("#f-http-anonymous");
  await submit(page, "form.stack button[type=submit]:not([formaction])");
  await see(page, "Connection hooks added");
  await see(page, "/ingress/hooks/");
  expect(!(await text(page)).includes("secret"), "the base URL's password is not shown back");

  step = "uploading uppercase";
  await page.goto(base + "/plugins");
  await page.setInputFiles("#file", join(plugins, "uppercase.wasm"));
  await submit(page, "form.stack button[type=submit]");
  // Stored disabled: what it declares is shown before it serves; then it is enabled.
  await see(page, "Uploaded uppercase 0.1.0 (transformer, wharf:plugin@0.1.3); it asks for: nothing. Stored disabled");
  await submit(page, "form[action^='/plugins/uppercase/versions/0.1.0/enable?'] button");
  await see(page, "uppercase 0.1.0: enabled");

  step = "a bad upload says which check failed";
  await page.setInputFiles("#file", join(plugins, "test", "alien.wasm"));
  await submit(page, "form.stack button[type=submit]");
  await see(page, "world check failed");

  step = "a route";
  await page.goto(base + "/routes/new");
  await page.fill("#name", "shout");
  await page.fill("#from", `rabbit:${queue}`);
  await page.fill("#through", "uppercase");
  await page.fill("#to", "local:ui.out");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Route created and started");
  await see(page, "running");
  await shoot(page, "route");
  // Restarted from its page, as any unit is: it runs again, on every host.
  await submit(page, "form[action*='/routes/shout/restart'] button");
  await see(page, "Restarted on every host");
  await see(page, "running");

  step = "sending on the Send page";
  await page.goto(base + "/send");
  await page.fill("#address", `rabbit:${queue}`);
  await page.fill("#payload", "hello from the browser");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Accepted by");
  await shoot(page, "send");

  step = "the upper-cased result on the Consume page";
  await page.goto(base + "/queue?address=local:ui.out");
  await page.click("#live");
  await page.locator(".live pre", { hasText: "HELLO FROM THE BROWSER" }).waitFor({ timeout: 15000 });
  await shoot(page, "consume");

  step = "a durable send through the outbox, and the dashboard's Outbox section";
  await page.goto(base + "/send");
  await page.fill("#address", `rabbit:${queue}`);
  await page.fill("#payload", "kept in the outbox");
  await page.check("#durable");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "In the outbox for");
  await page.goto(base + "/queue?address=local:ui.out");
  await page.click("#live");
  await page.locator(".live pre", { hasText: "KEPT IN THE OUTBOX" }).waitFor({ timeout: 15000 });
  // The relay marks it sent once RabbitMQ confirmed it; the backlog is read at most every 2 s.
  let drained = false;
  for (let i = 0; i < 20 && !drained; i++) {
    await page.goto(base + "/");
    drained = (await text(page)).includes("Nothing waiting");
    if (!drained) await page.waitForTimeout(300);
  }
  expect(drained, "the dashboard's Outbox section says nothing is waiting");
  // Both boxes at once are refused: a request waits now, the outbox sends later.
  await page.goto(base + "/send");
  await page.fill("#address", `rabbit:${queue}`);
  await page.check("#durable");
  await page.check("#wait");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Choose one");

  step = "a subscription, an event from the Send page, and the Queues list";
  await page.goto(base + "/subscriptions/new");
  await page.fill("#name", "ui-bookings");
  await page.fill("#service", "ui");
  await page.fill("#pattern", "Booking.*");
  await page.fill("#to", "local:ui.events");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Subscription created and started");
  await see(page, "ui.forward.Booking.any");
  await see(page, "running");
  await page.goto(base + "/send");
  await page.fill("#model", "shop.models.Booking");
  await page.fill("#event", "created");
  await page.fill("#data", '{"id": 42}');
  await submit(page, "form[action^='/send/event'] button[type=submit]");
  await see(page, "Event Booking.created published");
  await page.goto(base + "/send");
  await page.fill("#model", "Book ing");
  await page.fill("#event", "created");
  await submit(page, "form[action^='/send/event'] button[type=submit]");
  await see(page, "is not a model");
  await page.goto(base + "/queue?address=local:ui.events");
  await page.locator("pre", { hasText: '"id": 42' }).first().waitFor({ timeout: 15000 });
  await page.goto(base + "/queue?filter=ui-bookings");
  await see(page, "reads by ui-bookings");
  await see(page, "local:ui.forward.Booking.any");
  expect(!(await text(page)).includes("local:ui.out"), "the filter leaves other queues out");
  await page.goto(base + "/queue");
  await see(page, "local:ui.out");
  await shoot(page, "queues");
  await page.goto(base + "/subscriptions");
  await see(page, "ui-bookings");
  await shoot(page, "subscriptions");
  await page.goto(base + "/");
  await see(page, "subscription");

  step = "a daemon: created, stopped, started and restarted from the Daemons page";
  await page.goto(base + "/plugins");
  await page.setInputFiles("#file", join(plugins, "heartbeat.wasm"));
  await page.check("input[name=enabled]");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Uploaded heartbeat");
  await page.fill("#grant-heartbeat", "publish:local:events/Host.heartbeat");
  await submit(page, "form[action^='/plugins/heartbeat/grants'] button[type=submit]");
  await see(page, "publish:local:events/Host.heartbeat");
  await page.goto(base + "/daemons/new");
  await page.fill("#name", "ui-beat");
  await page.fill("#plugin", "uppercase");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "a daemon runs a daemon plugin");
  await page.fill("#plugin", "heartbeat");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Daemon created and started");
  await see(page, "running");
  await submit(page, "form[action*='/ui-beat/stop'] button");
  await see(page, "Stopped on every host");
  await see(page, "stopped");
  await submit(page, "form[action*='/ui-beat/start'] button");
  await see(page, "Started.");
  await see(page, "running");
  await submit(page, "form[action*='/ui-beat/restart'] button");
  await see(page, "Restarted");
  await page.goto(base + "/daemons");
  await see(page, "ui-beat");
  await see(page, "heartbeat@0.1.0");
  await shoot(page, "daemons");
  await page.goto(base + "/");
  await see(page, "daemon");

  step = "the Send page waits for a reply";
  await page.goto(base + "/plugins");
  await page.setInputFiles("#file", join(plugins, "echo.wasm"));
  await page.check("input[name=enabled]");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Uploaded echo");
  await page.goto(base + "/routes/new");
  await page.fill("#name", "answer");
  await page.fill("#from", "local:ask.in");
  await page.fill("#through", "echo");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Route created");
  await page.goto(base + "/send");
  await page.fill("#address", "local:ask.in");
  await page.fill("#payload", "are you there?");
  await page.check("#wait");
  await page.fill("#timeout_ms", "10000");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Reply from local:ask.in");
  await page.locator("#reply pre", { hasText: "are you there?" }).waitFor({ timeout: 5000 });
  await see(page, "UUID");
  await shoot(page, "send-reply");

  step = "a failing plugin's message lands in dead letters and is replayed";
  await page.goto(base + "/plugins");
  await page.setInputFiles("#file", join(plugins, "test", "panicker.wasm"));
  await page.check("input[name=enabled]");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Uploaded panicker");
  await see(page, "It serves now");
  await shoot(page, "plugins");
  await page.goto(base + "/routes/new");
  await page.fill("#name", "boom");
  await page.fill("#from", "local:boom.in");
  await page.fill("#through", "panicker");
  await page.fill("#to", "local:boom.out");
  await page.fill("#retry_max", "0");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Route created");
  await page.goto(base + "/send");
  await page.fill("#address", "local:boom.in");
  await page.fill("#payload", "panic");
  await submit(page, "form.stack button[type=submit]");
  await see(page, "Accepted by");
  let found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await page.goto(base + "/queue?address=local:boom.in.dead");
    found = (await text(page)).includes("Trap");
    if (!found) await page.waitForTimeout(250);
  }
  expect(found, "the dead letter shows its exception (Trap)");
  await shoot(page, "dead-letters");
  // One chosen message back to its route's input: it fails again and comes back.
  await submit(page, "button:has-text('Replay this one to its route')");
  await see(page, "Replayed 1 (1 to local:boom.in)");
  found = false;
  for (let i = 0; i < 40 && !found; i++) {
    await page.goto(base + "/queue?address=local:boom.in.dead");
    found = (await text(page)).includes("Trap");
    if (!found) await page.waitForTimeout(250);
  }
  expect(found, "the replayed message failed again and is back in dead letters");
  await page.fill("#replay-to", "local:replayed");
  await submit(page, "button[name=count][value='1000']");
  await see(page, "Replayed 1");
  await page.goto(base + "/queue?address=local:replayed");
  await see(page, "panic");
  expect(!(await text(page)).includes("exception_name"), "a replayed message loses its exception headers");

  step = "messages a client holds under a lease: one returned to its queue, one dead-lettered";
  const [heldOne, heldTwo] = process.env.WHARF_LEASES.split(" ");
  await page.goto(base + "/queue?address=local:held.jobs");
  await see(page, "Held under a lease");
  await see(page, heldOne);
  await see(page, heldTwo);
  expect(!(await text(page)).includes("held one"), "a held message is not shown waiting");
  await shoot(page, "leases");
  await submit(page, `#leases tr:has-text("${heldOne}") button[value=requeue]`);
  await see(page, `Returned the message of lease ${heldOne} to the queue.`);
  await see(page, "held one");
  expect(!(await page.locator("#leases").innerText()).includes(heldOne), "a returned lease is no longer listed");
  let asked = "";
  page.once("dialog", (dialog) => { asked = dialog.message(); dialog.accept(); });
  await submit(page, `#leases tr:has-text("${heldTwo}") button[value=dead_letter]`);
  expect(asked.includes(heldTwo), `the dead-letter button asks first, naming the lease (asked ${JSON.stringify(asked)})`);
  await see(page, `Dead-lettered the message of lease ${heldTwo}.`);
  expect(!(await text(page)).includes("Held under a lease"), "no lease is left on the page");
  await page.goto(base + "/queue?address=local:held.jobs.dead");
  await see(page, "held two");
  await see(page, "refused by the client that leased it");
  // A made-up lease, long and with markup: a clear refusal that neither echoes it whole nor
  // runs it; an unknown action is refused too.
  const take = await page.locator("form[action^='/queue/take']").first().getAttribute("action");
  const settle = base + take.replace("/queue/take", "/queue/lease");
  const madeUp = "<img src=x onerror=alert(1)>" + "x".repeat(20000);
  const unknown = await page.request.post(settle, { form: { address: "local:held.jobs", lease: madeUp, action: "requeue" } });
  const unknownText = await unknown.text();
  expect(unknown.status() === 404, `an unknown lease answers 404, not ${unknown.status()}`);
  expect(unknownText.includes("no lease"), "the refusal says no such lease is held");
  expect(!unknownText.includes("x".repeat(1000)), "the refusal does not echo the whole made-up lease");
  expect(!unknownText.includes("<img src=x"), "the made-up lease's markup is escaped");
  const badAction = await page.request.post(settle, { form: { address: "local:held.jobs", lease: heldOne, action: "delete" } });
  expect(badAction.status() >= 400 && badAction.status() < 500, `an unknown action is refused, not ${badAction.status()}`);

  step = "a worker's lease stream: listed on its queue's page and stopped by the admin";
  const streamId = process.env.WHARF_STREAM;
  await page.goto(base + "/queue?address=local:held.stream");
  await see(page, "Lease streams");
  await see(page, streamId);
  let askedStop = "";
  page.once("dialog", (dialog) => { askedStop = dialog.message(); dialog.accept(); });
  await submit(page, `#lease-streams tr:has-text("${streamId}") button`);
  expect(askedStop.includes(streamId), `the stop button asks first, naming the stream (asked ${JSON.stringify(askedStop)})`);
  await see(page, `Stopped lease stream ${streamId}.`);
  expect(!(await text(page)).includes("Lease streams"), "no stream is left on the page");
  const stopUrl = base + take.replace("/queue/take", "/queue/stream/stop");
  const madeUpStream = await page.request.post(stopUrl, { form: { address: "local:held.stream", stream: madeUp } });
  const madeUpText = await madeUpStream.text();
  expect(madeUpStream.status() === 404, `an unknown stream answers 404, not ${madeUpStream.status()}`);
  expect(!madeUpText.includes("x".repeat(1000)), "the refusal does not echo the whole made-up stream");
  expect(!madeUpText.includes("<img src=x"), "the made-up stream's markup is escaped");

  step = "a form without its CSRF token is refused";
  const forged = await page.request.post(base + "/routes/new", {
    form: { name: "forged", from: "local:a", to: "local:b" },
    maxRedirects: 0,
  });
  expect(forged.status() === 403, `status ${forged.status()}`);

  step = "users and a viewer";
  await page.goto(base + "/users");
  await page.fill("#uname", "vera");
  await page.fill("#upassword", "viewer password");
  await page.selectOption("#urole", "viewer");
  await submit(page, "form.stack:has(#uname) button[type=submit]");
  await see(page, "User vera added");
  await shoot(page, "users");
  await page.goto(base + "/routes");
  await shoot(page, "routes");

  const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const viewer = await viewerContext.newPage();
  await viewer.goto(base + "/login");
  await viewer.fill("#name", "vera");
  await viewer.fill("#password", "viewer password");
  await submit(viewer, "button[type=submit]");
  await see(viewer, "Dashboard");
  await viewer.goto(base + "/plugins");
  expect((await viewer.locator("input[type=file]").count()) === 0, "a viewer is offered no upload form");
  expect((await viewer.locator("a[href='/users']").count()) === 0, "a viewer is offered no Users page");
  const signOut = await viewer.locator("header form").getAttribute("action");
  const csrf = new URL(signOut, base).searchParams.get("csrf");
  expect(csrf, "the sign-out form carries the session's CSRF token in its action");
  const forced = await viewer.request.post(base + "/plugins?csrf=" + encodeURIComponent(csrf), {
    multipart: { file: { name: "x.wasm", mimeType: "application/wasm", buffer: Buffer.from("\0asm") } },
    maxRedirects: 0,
  });
  expect(forced.status() === 403, `a viewer's forced upload answers ${forced.status()}`);

  step = "registration, when an admin opens it, makes viewers";
  await page.goto(base + "/users");
  await submit(page, "button:has-text('Open registration')");
  await see(page, "Registration is open");
  const newcomer = await (await browser.newContext()).newPage();
  await newcomer.goto(base + "/login");
  await Promise.all([newcomer.waitForNavigation(), newcomer.click("a[href='/register']")]);
  await newcomer.fill("#name", "reggie");
  await newcomer.fill("#password", "a new reader here");
  await submit(newcomer, "button[type=submit]");
  await see(newcomer, "Dashboard");
  expect((await newcomer.locator("header").innerText()).includes("reggie (viewer)"), "a registered user is a viewer");

  step = "an admin changes a role and disables a user";
  await page.goto(base + "/users");
  await page.selectOption("#role-reggie", "operator");
  await submit(page, "form[action^='/users/reggie/role?'] button");
  await see(page, "reggie is now operator");
  await submit(page, "form[action^='/users/reggie/disable?'] button");
  await see(page, "reggie disabled");
  await newcomer.goto(base + "/");
  expect(newcomer.url().endsWith("/login"), "a disabled user's session ends");

  step = "a one-time reset link sets a new password";
  await submit(page, "form[action^='/users/vera/reset?'] button");
  const link = (await page.locator("pre.reset-link").innerText()).trim();
  const resetter = await (await browser.newContext()).newPage();
  await resetter.goto(link);
  await resetter.fill("#password", "vera's second password");
  await submit(resetter, "button[type=submit]");
  await see(resetter, "sign in with it");
  await resetter.goto(link);
  await see(resetter, "This link does not work");
  await resetter.goto(base + "/login");
  await resetter.fill("#name", "vera");
  await resetter.fill("#password", "vera's second password");
  await submit(resetter, "button[type=submit]");
  await see(resetter, "Dashboard");

  step = "a user changes their own password";
  await resetter.goto(base + "/account");
  await resetter.fill("#current", "vera's second password");
  await resetter.fill("#password", "vera's third password");
  await submit(resetter, "main button[type=submit]");
  await see(resetter, "Password changed");

  step = "five wrong passwords are throttled";
  const stranger = await (await browser.newContext()).newPage();
  for (let i = 0; i < 5; i++) {
    await stranger.goto(base + "/login");
    await stranger.fill("#name", "vera");
    await stranger.fill("#password", "wrong password " + i);
    await submit(stranger, "button[type=submit]");
    await see(stranger, "the name or the password is wrong");
  }
  await stranger.goto(base + "/login");
  await stranger.fill("#name", "vera");
  await stranger.fill("#password", "vera's third password");
  await submit(stranger, "button[type=submit]");
  await see(stranger, "too many failed sign-ins");

  step = "the audit log shows who did what, through the UI";
  await page.goto(base + "/audit?action=route.create");
  await see(page, "shout");
  await see(page, "ui");
  await page.goto(base + "/audit");
  await see(page, "session.sign_in_failed");
  expect(!(await text(page)).includes("wrong password"), "no password in the audit log");
  await shoot(page, "audit");

  step = "signing out";
  await submit(page, "header button[type=submit]");
  expect(page.url().endsWith("/login"), `signed out to ${page.url()}`);
  await shoot(page, "login");

  console.log("every step passed");
} catch (error) {
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
