// End-to-end test of the broker's `oidc` connector with real third-party software on both
// sides: panva's `oidc-provider` is the upstream identity provider (upstream-idp.mjs,
// started by the caller), panva's `openid-client` (v6) is the relying party, and Debian's
// headless Chromium, driven by `playwright-core`, is the citizen's browser. Started by
// tests/e2e/upstream_oidc.rs:
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   CONNECTOR=idp UPSTREAM_ISSUER=http://127.0.0.1:18090 USERNAME=an PASSWORD=demo \
//   EXPECT_NAME='Nguyễn Văn An' EXPECT_CITIZEN_ID=079201001234 EXPECT_BIRTHDATE=1990-03-15 \
//   EXPECT_ACR=http://eidas.europa.eu/LoA/high node tests/js/upstream-login.mjs
//
// Optional: SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default
// 60000). Ends with `upstream e2e: N passed, M failed`; exit status 0 only when nothing
// failed.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const PREFIX = 'upstream e2e';

function need(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    console.error(`${PREFIX}: environment variable ${name} is required`);
    process.exit(2);
  }
  return v;
}

const ISSUER = need('ISSUER').replace(/\/+$/, '');
const CLIENT_ID = need('CLIENT_ID');
const CLIENT_SECRET = need('CLIENT_SECRET');
const RP_PORT = Number(need('RP_PORT'));
const CONNECTOR = need('CONNECTOR');
const UPSTREAM_ORIGIN = new URL(need('UPSTREAM_ISSUER')).origin;
const USERNAME = need('USERNAME');
const PASSWORD = need('PASSWORD');
const EXPECT_NAME = need('EXPECT_NAME');
const EXPECT_CITIZEN_ID = need('EXPECT_CITIZEN_ID');
const EXPECT_BIRTHDATE = need('EXPECT_BIRTHDATE');
const EXPECT_ACR = need('EXPECT_ACR');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 60000);

const RP_ORIGIN = `http://127.0.0.1:${RP_PORT}`;
const REDIRECT_URI = `${RP_ORIGIN}/callback`;
const BROKER_ORIGIN = new URL(ISSUER).origin;

// ---------------------------------------------------------------------------------------
// The relying party: a tiny node:http server using openid-client.

let config;
const pending = new Map(); // state -> { nonce, verifier }
const results = [];

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function describeError(e) {
  const parts = [`${e?.name ?? 'Error'}: ${e?.message ?? e}`];
  if (e?.code) parts.push(`code: ${e.code}`);
  if (e?.error) parts.push(`error: ${e.error}`);
  if (e?.error_description) parts.push(`error_description: ${e.error_description}`);
  if (e?.cause !== undefined) {
    try {
      parts.push(`cause: ${e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : JSON.stringify(e.cause)}`);
    } catch {
      parts.push(`cause: ${String(e.cause)}`);
    }
  }
  return parts.join('\n');
}

async function startLogin(req, res) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  pending.set(state, { nonce, verifier });
  const target = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile citizen_id',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
  res.end();
}

async function finishLogin(req, res, url) {
  const state = url.searchParams.get('state');
  const checks = state !== null ? pending.get(state) : undefined;
  try {
    if (!checks) throw new Error(`callback with unknown or missing state: ${url.search}`);
    pending.delete(state);
    const tokens = await client.authorizationCodeGrant(config, url, {
      pkceCodeVerifier: checks.verifier,
      expectedNonce: checks.nonce,
      expectedState: state,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    results.push({ claims, userinfo });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(page('Signed in', `<pre id="claims">${escapeHtml(JSON.stringify(claims, null, 2))}</pre>`));
  } catch (e) {
    results.push({ error: describeError(e) });
    res.writeHead(500, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page('Login failed', `<pre id="error">${escapeHtml(describeError(e))}</pre>`));
  }
}

function startRp() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, RP_ORIGIN);
    let work;
    if (req.method === 'GET' && url.pathname === '/login') work = startLogin(req, res);
    else if (req.method === 'GET' && url.pathname === '/callback') work = finishLogin(req, res, url);
    else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    work.catch((e) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(describeError(e));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(RP_PORT, '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------------------------------
// The browser side.

let step = 'starting';
let aborted = false;
const passed = [];
const failed = [];

class Failure extends Error {}

function check(cond, message) {
  if (!cond) throw new Failure(message);
}

async function screenshot(p, name) {
  if (!SCREENSHOT_DIR) return;
  try {
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await p.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
  } catch (e) {
    console.error(`${PREFIX}: could not save screenshot ${name}: ${e.message}`);
  }
}

async function where(p) {
  try {
    const text = (await p.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').slice(0, 400);
    return `at ${p.url()} (title ${JSON.stringify(await p.title())}): ${text}`;
  } catch {
    return `at ${p.url()}`;
  }
}

async function scenario(name, fn, p) {
  step = name;
  try {
    await fn();
    if (aborted) return false;
    passed.push(name);
    console.log(`ok - ${name}`);
    return true;
  } catch (e) {
    if (aborted) throw e;
    const msg = (e instanceof Failure ? e.message : describeError(e)).replace(/\x1b\[[0-9;]*m/g, '');
    failed.push(name);
    console.log(`not ok - ${name}\n    ${msg.replace(/\n/g, '\n    ')}\n    browser ${await where(p)}`);
    await screenshot(p, `upstream-failure-${failed.length}.png`);
    return false;
  }
}

async function run(state) {
  step = 'starting the relying party';
  state.server = await startRp();

  step = `discovery of ${ISSUER}`;
  config = await client.discovery(
    new URL(ISSUER),
    CLIENT_ID,
    { redirect_uris: [REDIRECT_URI], response_types: ['code'] },
    client.ClientSecretBasic(CLIENT_SECRET),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );

  step = 'launching chromium';
  state.browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });

  // Scenario 1: choose the upstream provider, sign in there, land back at the platform.
  const ctx1 = await state.browser.newContext({ locale: 'en-US' });
  ctx1.setDefaultTimeout(15000);
  const p1 = await ctx1.newPage();
  await scenario(
    'login through the upstream oidc-provider',
    async () => {
      const before = results.length;
      await p1.goto(`${RP_ORIGIN}/login`);
      await p1.locator(`#use-${CONNECTOR}`).waitFor();
      check(new URL(p1.url()).origin === BROKER_ORIGIN, `choice page is not on the broker: ${p1.url()}`);
      await screenshot(p1, 'upstream-choice.png');
      await p1.locator(`#use-${CONNECTOR}`).click();
      await p1.locator('#username').waitFor();
      check(new URL(p1.url()).origin === UPSTREAM_ORIGIN, `login page is not at the upstream provider: ${p1.url()}`);
      await screenshot(p1, 'upstream-login.png');
      await p1.locator('#username').fill(USERNAME);
      await p1.locator('#password').fill(PASSWORD);
      await p1.locator('#submit').click();
      await p1.waitForURL((u) => u.origin === RP_ORIGIN && u.pathname === '/callback', { waitUntil: 'load' });
      const err = p1.locator('#error');
      if (await err.count()) throw new Failure(`the relying party rejected the response:\n${await err.innerText()}`);
      check(results.length === before + 1, `expected one new callback result, got ${results.length - before}`);
      const r = results[results.length - 1];
      check(!r.error, `relying party error: ${r.error}`);
      await screenshot(p1, 'upstream-claims.png');
      const c = r.claims;
      check(c.name === EXPECT_NAME, `name is ${JSON.stringify(c.name)}, expected ${JSON.stringify(EXPECT_NAME)}`);
      check(c.citizen_id === EXPECT_CITIZEN_ID, `citizen_id is ${JSON.stringify(c.citizen_id)}, expected ${EXPECT_CITIZEN_ID}`);
      check(c.birthdate === EXPECT_BIRTHDATE, `birthdate is ${JSON.stringify(c.birthdate)}, expected ${EXPECT_BIRTHDATE}`);
      check(c.acr === EXPECT_ACR, `acr is ${JSON.stringify(c.acr)}, expected ${EXPECT_ACR}`);
      check(Array.isArray(c.amr) && c.amr.includes('hwk'), `amr ${JSON.stringify(c.amr)} does not pass on the upstream "hwk"`);
      check(r.userinfo.sub === c.sub, `userinfo sub ${r.userinfo.sub} differs from ID token sub ${c.sub}`);
      check(r.userinfo.citizen_id === EXPECT_CITIZEN_ID, `userinfo citizen_id ${JSON.stringify(r.userinfo.citizen_id)}`);
    },
    p1,
  );
  await ctx1.close();

  // Scenario 2: the citizen cancels at the upstream provider; the broker says so in their
  // language and offers the other ways to sign in.
  const ctx2 = await state.browser.newContext({ locale: 'en-US' });
  ctx2.setDefaultTimeout(15000);
  const p2 = await ctx2.newPage();
  await scenario(
    'cancel at the upstream provider, then choose another way',
    async () => {
      await p2.goto(`${RP_ORIGIN}/login`);
      await p2.locator(`#use-${CONNECTOR}`).click();
      await p2.locator('#cancel').click();
      await p2.waitForURL((u) => u.origin === BROKER_ORIGIN && u.pathname.startsWith('/callback/'), { waitUntil: 'load' });
      const text = await p2.locator('body').innerText();
      check(text.includes('You cancelled the sign-in'), `the broker page does not say the citizen cancelled: ${text}`);
      await screenshot(p2, 'upstream-cancelled.png');
      await p2.locator('a', { hasText: 'Choose another way to sign in' }).click();
      await p2.locator(`#use-${CONNECTOR}`).waitFor();
      check(new URL(p2.url()).pathname.startsWith('/login/'), `not back at the choice page: ${p2.url()}`);
    },
    p2,
  );
  await ctx2.close();
}

async function main() {
  const state = { server: null, browser: null };
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      aborted = true;
      reject(new Failure(`timed out after ${TIMEOUT_MS / 1000} s (E2E_TIMEOUT_MS)`));
    }, TIMEOUT_MS);
  });
  let fatal = null;
  try {
    const running = run(state);
    running.catch(() => {});
    await Promise.race([running, timeout]);
  } catch (e) {
    fatal = (e instanceof Failure ? e.message : describeError(e)).replace(/\x1b\[[0-9;]*m/g, '');
  } finally {
    clearTimeout(timer);
    if (state.browser) await state.browser.close().catch(() => {});
    if (state.server) {
      state.server.closeAllConnections?.();
      await new Promise((r) => state.server.close(() => r()));
    }
  }
  if (fatal) {
    console.log(`not ok - ${step}\n    ${fatal.replace(/\n/g, '\n    ')}`);
    failed.push(step);
  }
  console.log(`${PREFIX}: ${passed.length} passed, ${failed.length} failed`);
  process.exit(failed.length === 0 && passed.length > 0 ? 0 : 1);
}

main();
