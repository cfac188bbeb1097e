// What the browser scripts (login.mjs, connectors.mjs, upstream-login.mjs) share: their
// common settings, the relying party (rp.mjs), Debian's headless Chromium driven by
// playwright-core, the scenario runner, a global timeout and the TAP-like report
// (`ok - …`/`not ok - …`, then `<prefix>: N passed, M failed`) that tests/e2e reads.

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { describeError, needFor } from './common.mjs';
import { RelyingParty } from './rp.mjs';

/** A failed expectation: reported by its message alone, without a stack or error name. */
export class Failure extends Error {}

export function check(cond, message) {
  if (!cond) throw new Failure(message);
}

// Playwright colours its error messages; the report is read as plain text.
function plain(e) {
  return (e instanceof Failure ? e.message : describeError(e)).replace(/\x1b\[[0-9;]*m/g, '');
}

function indent(text) {
  return text.replace(/\n/g, '\n    ');
}

/** A short description of where the browser is, for failure messages. */
export async function where(p) {
  try {
    const text = (await p.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').slice(0, 500);
    return `at ${p.url()} (title ${JSON.stringify(await p.title())}): ${text}`;
  } catch {
    return `at ${p.url()}`;
  }
}

// Headless in containers and CI, where Chromium's sandbox and a GPU are often missing; and
// no traffic of Chromium's own (updates, sync, QUIC) besides the pages under test.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export class Harness {
  /**
   * `prefix` starts the messages and the summary line; `scenarios` is how many scenarios the
   * script runs (fewer passes is a failure, so none can be lost silently); `timeoutMs` the
   * default of E2E_TIMEOUT_MS; `contextTimeoutMs` the default timeout of each browser
   * action; `scope` what the relying party asks for; `idTokenAlg` the client's registered
   * id_token_signed_response_alg.
   *
   * Reads the settings every script has: ISSUER, CLIENT_ID, CLIENT_SECRET, RP_PORT
   * (required), SCREENSHOT_DIR, CHROMIUM, E2E_TIMEOUT_MS.
   */
  constructor({ prefix, scenarios, timeoutMs, contextTimeoutMs = 15000, scope, idTokenAlg = 'RS256' }) {
    this.prefix = prefix;
    this.need = needFor(prefix);
    this.expected = scenarios;
    this.issuer = this.need('ISSUER').replace(/\/+$/, '');
    this.brokerOrigin = new URL(this.issuer).origin;
    const port = Number(this.need('RP_PORT'));
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      console.error(`${prefix}: RP_PORT must be a port number, got ${process.env.RP_PORT}`);
      process.exit(2);
    }
    this.rp = new RelyingParty({
      issuer: this.issuer,
      clientId: this.need('CLIENT_ID'),
      clientSecret: this.need('CLIENT_SECRET'),
      port,
      scope,
      idTokenAlg,
    });
    this.rpOrigin = this.rp.origin;
    this.screenshotDir = process.env.SCREENSHOT_DIR || '';
    this.chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
    this.timeoutMs = Number(process.env.E2E_TIMEOUT_MS || timeoutMs);
    this.contextTimeoutMs = contextTimeoutMs;
    this.browser = null;
    this.step = 'starting';
    this.aborted = false; // set by the global timeout: later outcomes are not reported
    this.passed = [];
    this.failed = [];
  }

  /** The relying party's callback results so far; take its length before a login. */
  get results() {
    return this.rp.results;
  }

  async screenshot(p, name) {
    if (!this.screenshotDir) return;
    try {
      fs.mkdirSync(this.screenshotDir, { recursive: true });
      await p.screenshot({ path: path.join(this.screenshotDir, name), fullPage: true });
    } catch (e) {
      console.error(`${this.prefix}: could not save screenshot ${name}: ${e.message}`);
    }
  }

  /** A fresh browser profile (no cookies) that prefers English, like a citizen's browser. */
  async newContext() {
    const context = await this.browser.newContext({ locale: 'en-US' });
    context.setDefaultTimeout(this.contextTimeoutMs);
    return context;
  }

  /**
   * Waits for the relying party's callback page after a login started when `before`
   * results were recorded, and returns the one new result: { claims, userinfo,
   * idTokenHeader }. The claims shown to the browser must be those validated.
   */
  async readCallback(p, before) {
    await p.waitForURL((u) => u.origin === this.rpOrigin && u.pathname === '/callback', { waitUntil: 'load' });
    const err = p.locator('#error');
    if (await err.count()) {
      throw new Failure(`the relying party rejected the authorization response:\n${await err.innerText()}`);
    }
    const shown = JSON.parse(await p.locator('#claims').innerText());
    const results = this.rp.results;
    check(results.length === before + 1, `expected one new callback result, got ${results.length - before}`);
    const r = results[results.length - 1];
    check(!r.error, `relying party error: ${r.error}`);
    check(JSON.stringify(shown) === JSON.stringify(r.claims), 'the claims page differs from the validated ID token');
    return { claims: shown, userinfo: r.userinfo, idTokenHeader: r.idTokenHeader };
  }

  /**
   * Runs one scenario and reports it; `p` (optional) is the page described and
   * photographed if it fails. Returns whether it passed.
   */
  async scenario(name, fn, p) {
    this.step = name;
    try {
      await fn();
      if (this.aborted) return false;
      this.passed.push(name);
      console.log(`ok - ${name}`);
      return true;
    } catch (e) {
      if (this.aborted) throw e;
      const place = p ? `\n    browser ${await where(p)}` : '';
      this.failed.push(name);
      console.log(`not ok - ${name}\n    ${indent(plain(e))}${place}`);
      if (p) await this.screenshot(p, `failure-${name.replace(/\W+/g, '-')}.png`);
      return false;
    }
  }

  /** A scenario in a browser of its own: `fn(p, context)` gets a new page of a new context. */
  async scenarioInFreshContext(name, fn) {
    this.step = name;
    const context = await this.newContext();
    try {
      const p = await context.newPage();
      return await this.scenario(name, () => fn(p, context), p);
    } finally {
      await context.close().catch(() => {});
    }
  }

  /** A scenario that cannot run: counted as failed. */
  skip(name, why) {
    this.failed.push(name);
    console.log(`not ok - ${name}\n    skipped: ${why}`);
  }

  /**
   * Starts the relying party (with discovery) and Chromium, runs `body(this)` under the
   * global timeout, cleans up, reports and exits: 0 only when all the scenarios passed.
   */
  async run(body) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        this.aborted = true;
        reject(new Failure(`timed out after ${this.timeoutMs / 1000} s (E2E_TIMEOUT_MS)`));
      }, this.timeoutMs);
    });
    let fatal = null;
    try {
      const running = this.start().then(() => body(this));
      running.catch(() => {}); // after a timeout its outcome no longer matters
      await Promise.race([running, timeout]);
    } catch (e) {
      fatal = plain(e);
    } finally {
      clearTimeout(timer);
      if (this.browser) await this.browser.close().catch(() => {});
      await this.rp.close();
    }
    if (fatal) {
      console.log(`not ok - ${this.step}\n    ${indent(fatal)}`);
      this.failed.push(this.step);
    } else if (this.failed.length === 0 && this.passed.length !== this.expected) {
      console.log(`not ok - the scenarios\n    ${this.passed.length} passed, ${this.expected} expected`);
      this.failed.push('the scenarios');
    }
    console.log(`${this.prefix}: ${this.passed.length} passed, ${this.failed.length} failed`);
    process.exit(this.failed.length === 0 && this.passed.length === this.expected ? 0 : 1);
  }

  async start() {
    this.step = 'starting the relying party';
    await this.rp.start();

    this.step = `discovery of ${this.issuer}`;
    const meta = await this.rp.discover();
    check(meta.issuer === this.issuer, `discovered issuer ${meta.issuer}, expected ${this.issuer}`);

    this.step = 'launching chromium';
    this.browser = await chromium.launch({ executablePath: this.chromiumPath, headless: true, args: CHROMIUM_ARGS });
  }
}
