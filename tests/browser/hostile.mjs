// Hostile names in a real headless Chromium: a queue address, a plugin's version, description
// and wanted grants, a connection name, message ids, headers and payloads, each written to break
// out of HTML or of a script inside an attribute, are shown on every page that shows them.
// None may run: no alert dialog opens (the only dialogs are our own confirmations, saying the
// name as text), the DOM holds no element or handler they made, and every page is served with
// a Content-Security-Policy that forbids inline script, which stops an injected handler too.
//
// Environment: WHARF_URL (a host with an admin `ada`), HOSTILE_CONNECTION,
// HOSTILE_QUEUE (connection:queue), HOSTILE_ROUTE, CHROMIUM.
import { chromium } from "playwright-core";

const base = process.env.WHARF_URL;
const connection = process.env.HOSTILE_CONNECTION;
const queue = process.env.HOSTILE_QUEUE;
const route = process.env.HOSTILE_ROUTE;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

let step = "starting";
function expect(condition, what) {
  if (!condition) throw new Error(`${step}: ${what}`);
}

try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", async (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    await dialog.accept();
  });
  const policies = [];
  page.on("response", (response) => {
    if (response.request().resourceType() === "document" && response.status() < 300) {
      policies.push({ url: response.url(), csp: response.headers()["content-security-policy"] || "" });
    }
  });
  // What a successful injection would leave behind.
  async function clean(where) {
    const found = await page.evaluate(() => ({
      inline: document.querySelectorAll("script:not([src])").length,
      handlers: document.querySelectorAll("[onload],[onerror],[onclick],[onsubmit],[onmouseover]").length,
      planted: document.querySelectorAll("svg, img, iframe, object, embed").length,
      pwned: window.pwned === true,
    }));
    expect(found.inline === 0 && found.handlers === 0 && found.planted === 0 && !found.pwned,
      `${where}: injected markup in the DOM ${JSON.stringify(found)}`);
  }
  async function visit(path, mustShow) {
    step = `visiting ${path}`;
    await page.goto(base + path);
    const text = await page.locator("main").innerText();
    for (const wanted of mustShow) {
      expect(text.includes(wanted), `shows ${JSON.stringify(wanted)} as text; the page says: ${text.slice(0, 2000)}`);
    }
    await clean(path);
  }

  step = "signing in as an admin";
  await page.goto(base + "/login");
  await page.fill("#name", "ada");
  await page.fill("#password", "a password for ada");
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);

  const address = encodeURIComponent(queue);
  await visit("/", [connection, route]);
  await visit("/routes", [route, `${connection}:`]);
  await visit("/routes/" + encodeURIComponent(route), ["hostile@1'-alert(1)-'"]);
  expect((await page.inputValue("#from")).startsWith(`${connection}:`), "the route's input shows the connection's name");
  await visit("/plugins", ["1'-alert(1)-'\"><svg/onload=alert(2)>", "<script>alert(6)</script>"]);
  await visit("/connections", [connection]);
  await visit("/connections/" + encodeURIComponent(connection), [connection]);
  await visit("/queue?address=" + address, [queue, "<script>alert(10)</script>", "x'-alert(11)-'", "<img src=x onerror=alert(13)>"]);
  await visit("/send?address=" + address, []);
  // The list of every queue: the hostile queue and the hostile route's input, as text.
  await visit("/queue", [queue, "q'-alert(8)-'", route]);
  await visit("/queue?filter=" + encodeURIComponent("alert(1)"), [queue]);
  await visit("/queue?filter=" + encodeURIComponent("<svg/onload=alert(3)>"), ["<svg/onload=alert(3)>"]);
  await visit("/subscriptions", []);
  await visit("/daemons", []);
  await visit("/daemons/new", []);
  await visit("/audit", [connection]);
  await visit("/users", []);

  step = "purging the hostile queue: the confirmation says its name, as text";
  await page.goto(base + "/queue?address=" + address);
  await Promise.all([page.waitForNavigation(), page.click("form[action^='/queue/purge?'] button")]);
  expect(dialogs.length === 1 && dialogs[0].type === "confirm", `one confirmation: ${JSON.stringify(dialogs)}`);
  expect(dialogs[0].message.includes(queue), `it names ${queue}: ${dialogs[0].message}`);
  await page.locator("main", { hasText: "Purged" }).waitFor({ timeout: 10000 });
  await clean("after the purge");

  step = "deleting a version of the hostile plugin asks first, naming it, and posts where it says";
  await page.goto(base + "/plugins");
  const before = dialogs.length;
  const xssRow = page.locator("tr", { hasText: "svg/onload=alert(2)" });
  await Promise.all([page.waitForNavigation(), xssRow.locator("button", { hasText: "Delete" }).click()]);
  expect(dialogs.length === before + 1 && dialogs[before].type === "confirm", `a confirmation: ${JSON.stringify(dialogs)}`);
  expect(dialogs[before].message.includes("alert(1)"), `it names the version as text: ${dialogs[before].message}`);
  // The route runs that version: the plugin's own delete refused it (the form reached it).
  await page.locator("main", { hasText: "uses version" }).waitFor({ timeout: 10000 });
  await clean("after the delete");

  step = "a version that climbs out of the path stays one segment of the form's action";
  await page.goto(base + "/plugins");
  const pathRow = page.locator("tr", { hasText: "../../../users/bob" });
  await Promise.all([page.waitForNavigation(), pathRow.locator("button", { hasText: "Enable" }).click()]);
  await page.locator("main", { hasText: "hostile ../../../users/bob: enabled" }).waitFor({ timeout: 10000 });
  await page.goto(base + "/plugins");
  await Promise.all([page.waitForNavigation(), page.locator("tr", { hasText: "../../../users/bob" }).locator("button", { hasText: "Disable" }).click()]);
  await page.locator("main", { hasText: "hostile ../../../users/bob: disabled" }).waitFor({ timeout: 10000 });
  await page.goto(base + "/users");
  const bob = await page.locator("tr", { hasText: "bob" }).innerText();
  expect(bob.includes("active"), `bob was not disabled by a plugin's version: ${bob}`);

  step = "an injected inline handler does not run (the CSP)";
  await page.goto(base + "/");
  await page.evaluate(() => {
    document.body.insertAdjacentHTML("beforeend", '<img src="data:," onerror="window.pwned = true">');
    document.body.insertAdjacentHTML("beforeend", "<div onclick=\"window.pwned = true\" id=trap>x</div>");
  });
  await page.click("#trap");
  await page.waitForTimeout(300);
  expect(!(await page.evaluate(() => window.pwned === true)), "an inline handler ran despite the CSP");

  step = "every page came with the Content-Security-Policy";
  expect(policies.length >= 12, `pages seen: ${policies.length}`);
  for (const { url, csp } of policies) {
    expect(csp.includes("script-src 'nonce-") && !csp.includes("unsafe-inline") && !csp.includes("'self'; style"),
      `${url}: CSP ${JSON.stringify(csp)}`);
  }
  expect(dialogs.every((d) => d.type === "confirm"), `no alert ever opened: ${JSON.stringify(dialogs)}`);
  console.log("no hostile name ran");
} catch (error) {
  console.error(String(error.stack || error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
