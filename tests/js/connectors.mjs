// The identity sources of issue #4 driven in real headless Chromium (playwright-core with
// Debian's /usr/bin/chromium), with panva's openid-client as the relying party:
//
// 1. bank card + SMS code: the form, then the code read from the simulated SMS inbox page
//    in a second tab (the citizen's phone);
// 2. CTID: the wait page with its QR code; the "phone app" page approves in a second tab,
//    and the waiting page continues by itself (its script polls);
// 3. an old portal account (username and password).
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   SMS_INBOX=http://127.0.0.1:18084/inbox node tests/js/connectors.mjs
//
// Optional: BANK_ID (default bank-card), CTID_ID (ctid), LEGACY_ID (old-portal),
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 90000).

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const PREFIX = 'connectors e2e';

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
const SMS_INBOX = need('SMS_INBOX');
const BANK_ID = process.env.BANK_ID || 'bank-card';
const CTID_ID = process.env.CTID_ID || 'ctid';
const LEGACY_ID = process.env.LEGACY_ID || 'old-portal';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 90000);

const RP_ORIGIN = `http://127.0.0.1:${RP_PORT}`;
const REDIRECT_URI = `${RP_ORIGIN}/callback`;

let config;
const pending = new Map();
const results = [];

async function startLogin(res, url) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  pending.set(state, { nonce, verifier });
  const params = {
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile citizen_id',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  for (const k of ['ui_locales', 'acr_values']) {
    const v = url.searchParams.get(k);
    if (v) params[k] = v;
  }
  res.writeHead(302, { location: client.buildAuthorizationUrl(config, params).href });
  res.end();
}

async function finishLogin(res, url) {
  const state = url.searchParams.get('state');
  const checks = state !== null ? pending.get(state) : undefined;
  try {
    if (!checks) throw new Error(`unknown state in ${url.search}`);
    pending.delete(state);
    const tokens = await client.authorizationCodeGrant(config, url, {
      pkceCodeVerifier: checks.verifier,
      expectedNonce: checks.nonce,
      expectedState: state,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    results.push({ claims });
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><meta charset=utf-8><pre id="claims">${JSON.stringify(claims).replace(/</g, '&lt;')}</pre>`);
  } catch (e) {
    results.push({ error: String(e?.message ?? e) + (e?.error ? ` (${e.error}: ${e.error_description})` : '') });
    res.writeHead(500, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><meta charset=utf-8><pre id="error">${String(e).replace(/</g, '&lt;')}</pre>`);
  }
}

function startRp() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, RP_ORIGIN);
    const work =
      url.pathname === '/login' ? startLogin(res, url) : url.pathname === '/callback' ? finishLogin(res, url) : null;
    if (!work) {
      res.writeHead(404);
      res.end();
      return;
    }
    work.catch((e) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(RP_PORT, '127.0.0.1', () => resolve(server));
  });
}

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}

async function shot(p, name) {
  if (!SCREENSHOT_DIR) return;
  try {
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await p.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
  } catch (e) {
    console.error(`${PREFIX}: screenshot ${name}: ${e.message}`);
  }
}

async function where(p) {
  try {
    const text = (await p.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').slice(0, 500);
    return `at ${p.url()}: ${text}`;
  } catch {
    return `at ${p.url()}`;
  }
}

async function claimsAfter(p, before) {
  await p.waitForURL((u) => u.origin === RP_ORIGIN && u.pathname === '/callback', { waitUntil: 'load' });
  check(results.length === before + 1, `expected one callback result, got ${results.length - before}`);
  const r = results[results.length - 1];
  check(!r.error, `relying party error: ${r.error}`);
  return r.claims;
}

const passed = [];
const failed = [];
let step = 'starting';
let aborted = false;

async function scenario(name, browser, fn) {
  step = name;
  const context = await browser.newContext({ locale: 'en-US' });
  context.setDefaultTimeout(20000);
  const p = await context.newPage();
  try {
    await fn(context, p);
    if (aborted) return;
    passed.push(name);
    console.log(`ok - ${name}`);
  } catch (e) {
    if (aborted) throw e;
    failed.push(name);
    console.log(`not ok - ${name}\n    ${String(e?.message ?? e).replace(/\n/g, '\n    ')}\n    browser ${await where(p)}`);
    await shot(p, `failure-${name.replace(/\W+/g, '-')}.png`);
  } finally {
    await context.close().catch(() => {});
  }
}

async function run(state) {
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

  await scenario('bank card and the SMS code read on the "phone"', state.browser, async (context, p) => {
    const before = results.length;
    await p.goto(`${RP_ORIGIN}/login?ui_locales=zh`);
    await p.locator(`#use-${BANK_ID}`).click();
    await p.locator('#f-card_number').waitFor();
    const notice = await p.locator('#notice').innerText();
    check(notice.includes('工商银行'), `the partner banks are listed: ${notice}`);
    await shot(p, 'bank-form.png');
    await p.locator('#f-name').fill('王伟');
    await p.locator('#f-id_number').fill('110101199003074517');
    await p.locator('#f-card_number').fill('6222 0202 0011 2345 679');
    await p.locator('#f-phone').fill('138 0013 8000');
    await p.locator('#submit').click();
    await p.locator('#f-code').waitFor();
    await shot(p, 'bank-code.png');
    // The citizen's phone: the simulated SMS inbox.
    const phone = await context.newPage();
    await phone.goto(`${SMS_INBOX}?to=${encodeURIComponent('+8613800138000')}`);
    const sms = await phone.locator('#messages .text').first().innerText();
    await shot(phone, 'sms-inbox.png');
    const code = (sms.match(/(?<!\d)\d{6}(?!\d)/) || [])[0];
    check(code, `no 6-digit code in the SMS: ${sms}`);
    await phone.close();
    await p.locator('#f-code').fill(code);
    await p.locator('#submit').click();
    const c = await claimsAfter(p, before);
    check(c.name === '王伟', `name ${c.name}`);
    check(c.citizen_id === '110101199003074517', `citizen_id ${c.citizen_id}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/substantial', `acr ${c.acr}`);
    check(Array.isArray(c.amr) && c.amr.includes('sms'), `amr ${JSON.stringify(c.amr)}`);
  });

  await scenario('CTID: QR code, approval in the app, the page continues by itself', state.browser, async (context, p) => {
    const before = results.length;
    await p.goto(`${RP_ORIGIN}/login?acr_values=${encodeURIComponent('http://eidas.europa.eu/LoA/high')}`);
    await p.locator(`#use-${CTID_ID}`).click();
    await p.locator('#qr').waitFor();
    const natural = await p.locator('#qr').evaluate((img) => img.naturalWidth);
    check(natural > 0, 'the QR code image renders');
    await shot(p, 'ctid-wait.png');
    const link = await p.locator('#app-link').getAttribute('href');
    check(link && link.includes('/app/'), `app link ${link}`);
    // The phone: opening the link stands for scanning the QR code.
    const phone = await context.newPage();
    await phone.goto(link);
    // The waiting page shows the progress by itself.
    await p.waitForFunction(() => document.getElementById('instruction')?.textContent.includes('scanned'), null, {
      timeout: 20000,
    });
    await shot(p, 'ctid-scanned.png');
    await phone.locator('#citizen').selectOption('an');
    await phone.locator('#approve').click();
    await phone.locator('#done').waitFor();
    await phone.close();
    // No click here: the wait page's script polls and lands on the platform.
    const c = await claimsAfter(p, before);
    check(c.name === 'Nguyễn Văn An', `name ${c.name}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/high', `acr ${c.acr}`);
    check(Array.isArray(c.amr) && c.amr.includes('face'), `amr ${JSON.stringify(c.amr)}`);
  });

  await scenario('old portal account', state.browser, async (context, p) => {
    const before = results.length;
    await p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
    await p.locator(`#use-${LEGACY_ID}`).click();
    await p.locator('#f-username').waitFor();
    const notice = await p.locator('#notice').innerText();
    check(notice.includes('VNeID'), `the end date and the alternatives are shown: ${notice}`);
    await shot(p, 'legacy-form.png');
    await p.locator('#f-username').fill('nguyenvanan');
    await p.locator('#f-password').fill('matkhau-cu');
    await p.locator('#submit').click();
    const c = await claimsAfter(p, before);
    check(c.name === 'Nguyễn Văn An', `name ${c.name}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/low', `acr ${c.acr}`);
  });
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
    fatal = String(e?.message ?? e);
  } finally {
    clearTimeout(timer);
    if (state.browser) await state.browser.close().catch(() => {});
    if (state.server) {
      state.server.closeAllConnections?.();
      await new Promise((r) => state.server.close(() => r()));
    }
  }
  if (fatal) {
    console.log(`not ok - ${step}\n    ${fatal}`);
    failed.push(step);
  }
  console.log(`${PREFIX}: ${passed.length} passed, ${failed.length} failed`);
  process.exit(failed.length === 0 && passed.length === 3 ? 0 : 1);
}

main();
