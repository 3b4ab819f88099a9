// The console in a real browser: Debian's Chromium driven by playwright-core (no browser
// download), against `rampart serve` on a fresh data dir. Run by .ci/run:
//
//   RAMPART_BIN=target/debug/rampart node --test --test-concurrency=1 tests/browser/
//
// Screenshots land in target/browser/ (a CI artefact). The server runs without the CRS
// (so a stored-XSS payload reaches the database: the test is about escaping, not the
// WAF) and with `auth.require_mfa_for_admins = false` so the tenant admin can work
// without enrolling; the platform admin enrols TOTP and signs in with a code anyway.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const BIN = process.env.RAMPART_BIN || join(repo, "target/debug/rampart");
const CHROMIUM = process.env.RAMPART_CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(repo, "target/browser");
const ADMIN = "root@browser.example";
const MERCHANT_ADMIN = "admin@toko.example";
const PASSWORD = "maple orbit canvas thunder river";

let server, base, dataDir, browser;
const state = {};

function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function env() {
  const e = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("RAMPART_")),
  );
  return {
    ...e,
    RAMPART_DATA_DIR: dataDir,
    RAMPART_HTTP_LISTEN: base.replace("http://", ""),
    RAMPART_WAF_CRS_DIR: "none",
    RAMPART_AUTH_REQUIRE_MFA_FOR_ADMINS: "false",
  };
}

// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), independent of Rampart's code.
function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of text.replace(/=+$/, "").toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v >= 0) bits += v.toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const off = mac[mac.length - 1] & 0xf;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
}

const nowStep = () => Math.floor(Date.now() / 1000 / 30);

async function waitFor(check, what, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function signIn(page, email, password = PASSWORD) {
  await page.goto(`${base}/console/login`);
  await page.fill("#email", email);
  await page.fill("#password", password);
  await page.click("main button[type=submit]");
}

/// Pages that must not trigger a CSP violation: Chromium reports each on the console.
function watchCsp(page, seen) {
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.push(m.text());
  });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  dataDir = mkdtempSync(join(tmpdir(), "rampart-browser-"));
  base = `http://127.0.0.1:${await freePort()}`;
  execFileSync(BIN, ["admin", "create", "--email", ADMIN], { env: env(), input: PASSWORD });
  const log = openSync(join(dataDir, "server.log"), "w");
  server = spawn(BIN, ["serve"], { env: env(), stdio: ["ignore", log, log] });
  await waitFor(async () => (await fetch(`${base}/health`)).ok, "/health");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  if (server) await new Promise((r) => server.once("exit", r));
  if (!process.env.RAMPART_KEEP_DATA) rmSync(dataDir, { recursive: true, force: true });
});

test("the platform admin signs in, enrols TOTP from the QR page, and signs in again with a code", async () => {
  // This context bypasses the CSP only so the accessibility test can inject axe-core
  // later; the CSP itself is checked in the merchant's ordinary context below.
  state.admin = await browser.newContext({ bypassCSP: true });
  const page = await state.admin.newPage();
  await signIn(page, ADMIN);
  await page.waitForURL(`${base}/console/`);
  assert.match(await page.textContent("header"), /root@browser\.example/);

  await page.goto(`${base}/console/account`);
  await page.click("form[action='/console/account/mfa/enroll'] button");
  assert.equal(await page.locator(".qr svg").count(), 1, "a QR code is drawn");
  const secret = (await page.textContent("#totp-secret")).trim();
  assert.match(secret, /^[A-Z2-7]{16,}$/);
  const step = nowStep();
  await page.fill("#code", totp(secret, step));
  await page.click("form[action='/console/account/mfa/confirm'] button");
  const codes = await page.locator("#recovery-codes li").allTextContents();
  assert.ok(codes.length >= 8, `recovery codes shown once (${codes.length})`);
  // Shown once: the account page does not have them again.
  await page.goto(`${base}/console/account`);
  assert.equal(await page.locator("#recovery-codes").count(), 0);

  await page.click("header form[action='/console/logout'] button");
  await page.waitForURL(/\/console\/login\?out=1$/);
  await signIn(page, ADMIN);
  await page.waitForSelector("#code");
  // A code is good once per step: wait for the next one.
  await waitFor(async () => nowStep() > step, "the next TOTP step", 35000);
  await page.fill("#code", totp(secret, nowStep()));
  await page.click("main button[type=submit]");
  await page.waitForURL(`${base}/console/`);
  state.adminPage = page;
});

test("five wrong passwords lock the account, and the sixth try is told to wait", async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  for (let i = 0; i < 5; i++) {
    await signIn(page, "kasir@toko.example", `wrong password number ${i}`);
    assert.match(await page.textContent("[role=alert]"), /e-mail or password is incorrect/);
  }
  await signIn(page, "kasir@toko.example", "wrong password number 6");
  assert.match(await page.textContent("[role=alert]"), /too many (failed )?attempts/i);
  await ctx.close();
});

test("the platform admin creates a merchant tenant and its admin", async () => {
  const page = state.adminPage;
  await page.goto(`${base}/console/tenants`);
  await page.fill("#name", "Toko Browser");
  await page.selectOption("#kind", "merchant");
  await page.click("form[action='/console/tenants'] button[type=submit]");
  const id = (await page.textContent(".notice code")).trim();
  assert.match(id, /\S+/);
  state.tenant = id;
  await page.goto(`${base}/console/users?tenant=${encodeURIComponent(id)}`);
  await page.fill("#email", MERCHANT_ADMIN);
  await page.fill("#name", "Siti");
  await page.selectOption("#role", "tenant_admin");
  await page.fill("#password", PASSWORD);
  await page.click("form[action='/console/users'] button[type=submit]");
  await page.waitForURL(/done=created/);
  assert.match(await page.textContent("main table"), /admin@toko\.example/);
});

test("the merchant creates an API key whose secret is shown once", async () => {
  state.csp = [];
  state.merchant = await browser.newContext();
  const page = await state.merchant.newPage();
  watchCsp(page, state.csp);
  const res = await page.goto(`${base}/console/login`);
  assert.match(res.headers()["content-security-policy"], /script-src 'self'/);
  assert.doesNotMatch(res.headers()["content-security-policy"], /unsafe/);
  await signIn(page, MERCHANT_ADMIN);
  await page.waitForURL(`${base}/console/`);
  const cookies = await state.merchant.cookies();
  const session = cookies.find((c) => c.name === "rampart_console");
  assert.ok(session?.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
  // No token in storage the page's scripts could read (htmx keeps only the current path
  // there: its history cache is off).
  const stored = await page.evaluate(() =>
    [localStorage, sessionStorage].flatMap((s) =>
      Object.keys(s).map((k) => `${k}=${s.getItem(k)}`),
    ),
  );
  for (const entry of stored) {
    assert.ok(!entry.includes(session.value), entry);
    assert.doesNotMatch(entry, /rk_|eyJ|rft_|mfa_/, entry);
  }

  await page.goto(`${base}/console/api-keys`);
  await page.fill("#name", "checkout");
  await page.fill("#scopes", "payments:write payments:read payments:refund");
  await page.click("form[action='/console/api-keys'] button[type=submit]");
  const secret = (await page.textContent("#new-secret")).trim();
  assert.match(secret, /^rk_/);
  state.apiKey = secret;
  await page.goto(`${base}/console/api-keys`);
  assert.ok(!(await page.content()).includes(secret), "the secret is not shown again");
  state.merchantPage = page;
});

async function pay(body) {
  const res = await fetch(`${base}/api/v1/payments`, {
    method: "POST",
    headers: { authorization: `Bearer ${state.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.equal(res.status, 201, JSON.stringify(json));
  return json;
}

const card = { number: "4242424242424242", exp_month: 12, exp_year: 2030, cvc: "123" };

test("a payment taken through the API is refunded in the console", async () => {
  const p = await pay({ amount: 5000, currency: "USD", card, description: "Kursus las" });
  const page = state.merchantPage;
  await page.goto(`${base}/console/payments`);
  await page.click(`a[href='/console/payments/${p.id}']`);
  page.once("dialog", (d) => d.accept());
  await page.fill("#amount", "1000");
  await page.click(`form[action='/console/payments/${p.id}/refund'] button`);
  await page.waitForURL(`${base}/console/payments/${p.id}`);
  assert.match(await page.textContent("dl.facts"), /partially_refunded/);
  assert.match(await page.textContent("main"), /payment\.refund/);
  state.refunded = p.id;
});

test("a payment the fraud rules hold is approved from the review queue", async () => {
  const page = state.merchantPage;
  await page.goto(`${base}/console/payments/fraud-rules`);
  const rules = JSON.parse(await page.inputValue("#rules"));
  rules.review_at = 20;
  await page.fill("#rules", JSON.stringify(rules, null, 2));
  await page.click("form[action='/console/payments/fraud-rules'] button");
  assert.match(await page.textContent("[role=status]"), /Saved|Tersimpan/);
  // Over the high-amount threshold: a score of 30, which is now "review".
  const held = await pay({ amount: 2_000_000, currency: "USD", card });
  assert.equal(held.status, "review", JSON.stringify(held));
  await page.goto(`${base}/console/payments/review`);
  await page.click(`form[action='/console/payments/${held.id}/approve'] button`);
  await page.waitForURL(`${base}/console/payments/review`);
  assert.equal(await page.locator(`a[href='/console/payments/${held.id}']`).count(), 0);
  await page.goto(`${base}/console/payments/${held.id}`);
  assert.match(await page.textContent("dl.facts"), /Status\s*(captured|authorized)/);
});

test("the audit log lists the refund, filtered and paged", async () => {
  const page = state.merchantPage;
  await page.goto(`${base}/console/audit`);
  await page.fill("#action", "payment.refund");
  await page.click("form[action='/console/audit'] button");
  await page.waitForURL(/action=payment\.refund/);
  assert.match(await page.textContent("main table"), new RegExp(state.refunded));
  await page.goto(`${base}/console/audit/chain`);
  assert.match(await page.textContent("main"), /Verified|Terverifikasi/);
});

test("a POST without the CSRF token is refused and changes nothing", async () => {
  const page = state.merchantPage;
  const res = await page.request.post(`${base}/console/api-keys`, {
    form: { name: "forged", scopes: "payments:read" },
  });
  assert.equal(res.status(), 403);
  await page.goto(`${base}/console/api-keys`);
  assert.doesNotMatch(await page.textContent("main"), /forged/);
});

test("a stored XSS payload in a tenant name is shown as text", async () => {
  const page = state.adminPage;
  const payload = `<img src=x onerror="window.__xss=1">`;
  await page.goto(`${base}/console/tenants`);
  await page.fill("#name", payload);
  await page.click("form[action='/console/tenants'] button[type=submit]");
  await page.goto(`${base}/console/tenants`);
  assert.ok((await page.textContent("main table")).includes(payload), "shown as text");
  assert.equal(await page.locator("main img").count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
});

test("pages fit a 360 px phone", async () => {
  const ctx = await browser.newContext({ viewport: { width: 360, height: 780 } });
  const page = await ctx.newPage();
  await signIn(page, MERCHANT_ADMIN);
  await page.waitForURL(`${base}/console/`);
  for (const [path, name] of [
    ["/console/payments", "payments"],
    [`/console/payments/${state.refunded}`, "payment"],
    ["/console/api-keys", "api-keys"],
  ]) {
    await page.goto(`${base}${path}`);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 360, `${path} is ${wide}px wide at 360`);
    await page.screenshot({ path: join(SHOTS, `console-360-${name}.png`), fullPage: true });
  }
  await ctx.close();
});

test("no page broke the CSP", () => {
  assert.deepEqual(state.csp, []);
});

/// Every page, with an id for the detail page: axe-core (WCAG 2.1 A and AA) finds no
/// violation on any.
test("axe-core reports no accessibility violation on any page", async () => {
  const source = await import("node:fs").then((fs) => fs.readFileSync(AXE, "utf8"));
  const anon = await browser.newContext({ bypassCSP: true });
  const pages = [
    [anon, "/console/login"],
    ...[
      "/console/",
      "/console/tenants",
      `/console/users?tenant=${state.tenant}`,
      "/console/api-keys",
      "/console/audit",
      "/console/audit/chain",
      "/console/security",
      "/console/account",
      "/console/alerts",
      "/console/ops/keys",
      "/console/ops/backups",
      "/console/ops/jobs",
    ].map((p) => [state.admin, p]),
  ];
  const merchant = await browser.newContext({ bypassCSP: true });
  const mp = await merchant.newPage();
  await signIn(mp, MERCHANT_ADMIN);
  await mp.waitForURL(`${base}/console/`);
  for (const p of [
    "/console/payments",
    `/console/payments/${state.refunded}`,
    "/console/payments/review",
    "/console/payments/report",
    "/console/payments/fraud-rules",
    "/console/users",
    "/console/api-keys",
    "/console/webhooks",
  ]) {
    pages.push([merchant, p]);
  }
  const failures = [];
  for (const [ctx, path] of pages) {
    const page = await ctx.newPage();
    await page.goto(`${base}${path}`);
    await page.addScriptTag({ content: source });
    const result = await page.evaluate(() =>
      window.axe.run(document, {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
      }),
    );
    for (const v of result.violations) {
      failures.push(`${path}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    }
    await page.close();
  }
  assert.deepEqual(failures, []);
});
