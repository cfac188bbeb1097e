// End-to-end test of the broker with real third-party software: panva's `openid-client`
// (v6) is the relying party and Debian's headless Chromium, driven by `playwright-core`,
// is the citizen's browser. See README.md beside this file.
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   USERNAME=an PASSWORD=demo EXPECT_NAME='Nguyễn Văn An' node tests/js/login.mjs
//
// Optional: SCREENSHOT_DIR (PNG files of the pages), ID_TOKEN_ALG (the client's
// registered id_token_signed_response_alg, default RS256), CHROMIUM (default
// /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const PREFIX = 'openid-client e2e';

// ---------------------------------------------------------------------------------------
// Settings

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
const USERNAME = need('USERNAME');
const PASSWORD = need('PASSWORD');
const EXPECT_NAME = need('EXPECT_NAME');
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG || 'RS256';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 60000);

if (!Number.isInteger(RP_PORT) || RP_PORT <= 0 || RP_PORT > 65535) {
  console.error(`${PREFIX}: RP_PORT must be a port number, got ${process.env.RP_PORT}`);
  process.exit(2);
}

const RP_ORIGIN = `http://127.0.0.1:${RP_PORT}`;
const REDIRECT_URI = `${RP_ORIGIN}/callback`;
const BROKER_ORIGIN = new URL(ISSUER).origin;

// ---------------------------------------------------------------------------------------
// The relying party: a tiny node:http server using openid-client.

let config; // openid-client Configuration, from discovery
const pending = new Map(); // state -> { nonce, verifier }
const results = []; // one entry per callback: { claims, userinfo, idTokenHeader } or { error }

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem}pre{background:#f4f6f8;padding:1rem;border-radius:6px;white-space:pre-wrap}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function describeError(e) {
  const parts = [`${e?.name ?? 'Error'}: ${e?.message ?? e}`];
  if (e?.code) parts.push(`code: ${e.code}`);
  if (e?.error) parts.push(`error: ${e.error}`);
  if (e?.error_description) parts.push(`error_description: ${e.error_description}`);
  if (e?.status) parts.push(`status: ${e.status}`);
  if (e?.cause !== undefined) {
    let cause;
    try {
      cause = e.cause instanceof Error ? `${e.cause.name}: ${e.cause.message}` : JSON.stringify(e.cause);
    } catch {
      cause = String(e.cause);
    }
    parts.push(`cause: ${cause}`);
  }
  return parts.join('\n');
}

async function startLogin(req, res, url) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  pending.set(state, { nonce, verifier });
  const params = {
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  const locales = url.searchParams.get('ui_locales');
  if (locales) params.ui_locales = locales;
  const target = client.buildAuthorizationUrl(config, params);
  res.writeHead(302, { location: target.href, 'cache-control': 'no-store' });
  res.end();
}

async function finishLogin(req, res, url) {
  const state = url.searchParams.get('state');
  const checks = state !== null ? pending.get(state) : undefined;
  if (!checks) {
    const e = new Error(`callback with unknown or missing state: ${url.search}`);
    results.push({ error: describeError(e) });
    res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page('Login failed', `<pre id="error">${escapeHtml(describeError(e))}</pre>`));
    return;
  }
  pending.delete(state);
  try {
    // RFC 9207: the broker announces authorization_response_iss_parameter_supported, so
    // openid-client requires and checks `iss`; check it here too so that a broker that
    // stops sending it fails this test even if the metadata changes.
    if (url.searchParams.get('iss') !== ISSUER && !url.searchParams.has('error')) {
      throw new Error(`authorization response iss is ${JSON.stringify(url.searchParams.get('iss'))}, expected ${ISSUER}`);
    }
    // Checks state, iss, the code exchange with client_secret_basic and PKCE, and the ID
    // token: signature against the JWKS (non-repudiation checks), iss, aud, exp, iat,
    // nonce, alg.
    const tokens = await client.authorizationCodeGrant(config, url, {
      pkceCodeVerifier: checks.verifier,
      expectedNonce: checks.nonce,
      expectedState: state,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const idTokenHeader = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString('utf8'));
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    results.push({ claims, userinfo, idTokenHeader });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(
      page(
        'Signed in',
        `<h2>ID token claims</h2><pre id="claims">${escapeHtml(JSON.stringify(claims, null, 2))}</pre>` +
          `<h2>UserInfo</h2><pre id="userinfo">${escapeHtml(JSON.stringify(userinfo, null, 2))}</pre>`,
      ),
    );
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
    if (req.method === 'GET' && url.pathname === '/login') work = startLogin(req, res, url);
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
let aborted = false; // set by the global timeout: later outcomes are not reported
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

/** A short description of where the browser is, for failure messages. */
async function where(p) {
  try {
    const text = (await p.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').slice(0, 400);
    return `at ${p.url()} (title ${JSON.stringify(await p.title())}): ${text}`;
  } catch {
    return `at ${p.url()}`;
  }
}

/** A new page with its main-frame navigations and all its requests recorded. */
async function newTrackedPage(context) {
  const p = await context.newPage();
  const navigations = [];
  const requests = [];
  p.on('framenavigated', (frame) => {
    if (frame === p.mainFrame()) navigations.push(frame.url());
  });
  p.on('request', (r) => {
    if (r.isNavigationRequest()) requests.push(r.url());
  });
  return { p, navigations, requests };
}

/** Waits for the RP callback page and returns the result the RP recorded for it. */
async function readCallback(p, before) {
  await p.waitForURL((u) => u.origin === RP_ORIGIN && u.pathname === '/callback', { waitUntil: 'load' });
  const err = p.locator('#error');
  if (await err.count()) {
    throw new Failure(`the relying party rejected the authorization response:\n${await err.innerText()}`);
  }
  const shown = JSON.parse(await p.locator('#claims').innerText());
  check(results.length === before + 1, `expected one new callback result, got ${results.length - before}`);
  const r = results[results.length - 1];
  check(!r.error, `relying party error: ${r.error}`);
  check(JSON.stringify(shown) === JSON.stringify(r.claims), 'the claims page differs from the validated ID token');
  return { claims: shown, userinfo: r.userinfo, idTokenHeader: r.idTokenHeader };
}

async function scenario(name, fn, ctx) {
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
    const place = ctx?.p ? await where(ctx.p) : '';
    failed.push(name);
    console.log(`not ok - ${name}\n    ${msg.replace(/\n/g, '\n    ')}${place ? `\n    browser ${place}` : ''}`);
    if (ctx?.p) await screenshot(ctx.p, `failure-${failed.length}.png`);
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
    { redirect_uris: [REDIRECT_URI], response_types: ['code'], id_token_signed_response_alg: ID_TOKEN_ALG },
    client.ClientSecretBasic(CLIENT_SECRET),
    // http on loopback, and verify ID token signatures against the JWKS.
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] },
  );
  const meta = config.serverMetadata();
  check(meta.issuer === ISSUER, `discovered issuer ${meta.issuer}, expected ${ISSUER}`);

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

  // Scenario 1: a full login through the choice page and the test-citizens form.
  const ctx1 = await state.browser.newContext({ locale: 'en-US' });
  ctx1.setDefaultTimeout(15000);
  const t1 = await newTrackedPage(ctx1);
  let first;
  const ok1 = await scenario(
    'login through the choice page and the form',
    async () => {
      const before = results.length;
      await t1.p.goto(`${RP_ORIGIN}/login`);
      await t1.p.locator('#use-test-citizens').waitFor();
      check(new URL(t1.p.url()).origin === BROKER_ORIGIN, `choice page is not on the broker: ${t1.p.url()}`);
      await screenshot(t1.p, 'choice.png');
      await t1.p.locator('#use-test-citizens').click();
      await t1.p.locator('#f-username').waitFor();
      await t1.p.locator('#f-username').fill(USERNAME);
      await t1.p.locator('#f-password').fill(PASSWORD);
      await t1.p.locator('#submit').click();
      const r = await readCallback(t1.p, before);
      await screenshot(t1.p, 'claims.png');
      const c = r.claims;
      check(c.name === EXPECT_NAME, `name is ${JSON.stringify(c.name)}, expected ${JSON.stringify(EXPECT_NAME)}`);
      check(typeof c.acr === 'string' && c.acr !== '', `acr is missing: ${JSON.stringify(c.acr)}`);
      check(Array.isArray(c.amr) && c.amr.includes('pwd'), `amr ${JSON.stringify(c.amr)} does not include "pwd"`);
      check(typeof c.sid === 'string' && c.sid !== '', `sid is missing: ${JSON.stringify(c.sid)}`);
      check(Number.isInteger(c.auth_time), `auth_time is not a number: ${JSON.stringify(c.auth_time)}`);
      check(r.idTokenHeader.alg === ID_TOKEN_ALG, `ID token alg ${r.idTokenHeader.alg}, expected ${ID_TOKEN_ALG}`);
      check(r.userinfo.sub === c.sub, `userinfo sub ${r.userinfo.sub} differs from ID token sub ${c.sub}`);
      first = c;
    },
    t1,
  );

  // Scenario 2: the same browser asks again; its SSO session answers without a login page.
  if (ok1) {
    await scenario(
      'silent SSO with ui_locales=vi returns the same subject',
      async () => {
        const before = results.length;
        t1.navigations.length = 0;
        t1.requests.length = 0;
        await t1.p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
        const r = await readCallback(t1.p, before);
        const loginPages = [...t1.navigations, ...t1.requests].filter((u) => {
          const x = new URL(u);
          return x.origin === BROKER_ORIGIN && x.pathname.startsWith('/login/');
        });
        check(
          loginPages.length === 0,
          `a login page was shown despite the SSO session: ${loginPages.join(', ')} (navigations: ${t1.navigations.join(' -> ')})`,
        );
        const c = r.claims;
        check(c.sub === first.sub, `sub ${c.sub} differs from the first login's ${first.sub}`);
        check(c.auth_time === first.auth_time, `auth_time changed from ${first.auth_time} to ${c.auth_time} without a new login`);
        check(c.sid === first.sid, `sid changed from ${first.sid} to ${c.sid} within one SSO session`);
        check(c.name === EXPECT_NAME, `name is ${JSON.stringify(c.name)}, expected ${JSON.stringify(EXPECT_NAME)}`);
        check(r.userinfo.sub === c.sub, `userinfo sub ${r.userinfo.sub} differs from ID token sub ${c.sub}`);
        await screenshot(t1.p, 'claims-sso.png');
      },
      t1,
    );
  } else {
    failed.push('silent SSO with ui_locales=vi returns the same subject');
    console.log('not ok - silent SSO with ui_locales=vi returns the same subject\n    skipped: the first login failed');
  }
  await ctx1.close();

  // Scenario 3: a fresh browser (no cookies) asking for Vietnamese sees the choice page in
  // Vietnamese, although the browser itself prefers English.
  const ctx3 = await state.browser.newContext({ locale: 'en-US' });
  ctx3.setDefaultTimeout(15000);
  const t3 = await newTrackedPage(ctx3);
  await scenario(
    'fresh browser with ui_locales=vi gets the Vietnamese choice page',
    async () => {
      await t3.p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
      await t3.p.locator('#use-test-citizens').waitFor();
      await screenshot(t3.p, 'choice-vi.png');
      const lang = await t3.p.locator('html').getAttribute('lang');
      check(lang === 'vi', `<html lang> is ${JSON.stringify(lang)}, expected "vi"`);
      const h1 = (await t3.p.locator('h1').first().innerText()).trim();
      check(h1 === 'Chọn cách đăng nhập', `h1 is ${JSON.stringify(h1)}, expected "Chọn cách đăng nhập"`);
    },
    t3,
  );
  await ctx3.close();
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
    running.catch(() => {}); // after a timeout its outcome no longer matters
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
