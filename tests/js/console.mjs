// The operators' console in headless Chromium, end to end, on two broker instances (Redis
// + PostgreSQL): a password alone is refused; the demo-like admin signs in through the
// simulated VNeID at `high`; every console page passes axe-core (no violation of impact
// serious or critical); a broken connector is refused with its key and nothing applied; a
// new upstream OpenID provider is added and a citizen signs in through it without a
// restart; a bank put into maintenance is refused with the operator's message on the other
// instance; a version is rolled back; a review item is closed from the queue; a viewer can
// change nothing. Started by tests/e2e/console_browser.rs, which passes:
//
//   ISSUER, CLIENT_ID, CLIENT_SECRET, RP_PORT (the relying party of lib/harness.mjs),
//   TWIN (the other instance's base URL), VNEID2_ISSUER (a second simulated provider, not
//   configured yet), REVIEW_ID (an open review item), SCREENSHOT_DIR (optional).

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Harness, check, Failure } from './lib/harness.mjs';

const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const h = new Harness({ prefix: 'console e2e', scenarios: 9, timeoutMs: 240000, scope: 'openid profile' });
const TWIN = h.need('TWIN').replace(/\/+$/, '');
const VNEID2 = h.need('VNEID2_ISSUER').replace(/\/+$/, '');
const REVIEW_ID = h.need('REVIEW_ID');
const BROKER = h.brokerOrigin;

const NEW_PROVIDER = `
[[connectors]]
id = "vneid2"
type = "oidc"
name = { en = "Second provider", vi = "Nhà cung cấp thứ hai" }

[connectors.settings]
issuer = "${VNEID2}"
client_id = "broker-e2e"
client_secret = { env = "TEST_RP_SECRET" }
scopes = ["openid", "profile", "cccd"]
assurance_floor = "substantial"
max_assurance = "high"

[connectors.settings.claims]
citizen_id = "cccd"
citizen_id_proven = true

[connectors.settings.acr_levels]
"urn:vneid:sim:loa:level1" = "substantial"
"urn:vneid:sim:loa:level2" = "high"
`;

const BROKEN = `
[[connectors]]
id = "broken-idp"
type = "oidc"
name = { en = "Broken" }

[connectors.settings]
client_id = "x"
`;

/** axe-core on the page as shown now: serious and critical violations, as sentences. */
async function axe(p, label) {
  const loaded = await p.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await p.evaluate(AXE_SOURCE);
  const result = await p.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
  );
  const found = [];
  for (const v of result.violations) {
    if (v.impact !== 'serious' && v.impact !== 'critical') continue;
    found.push(`${label}: axe ${v.impact} ${v.id} (${v.help}) at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
  }
  const text = await p.locator('body').innerText();
  if (/Unknown localization key/.test(text)) found.push(`${label}: a raw message key`);
  return found;
}

/** At the simulated VNeID (either one): sign in as `username`. */
async function atVneid(p, username) {
  await p.locator(`#citizen-${username}`).check();
  await p.locator('#password').fill('demo');
  await p.locator('#login').click();
}

/** A citizen's login at the relying party with the test citizens' password form. */
async function passwordLogin(p) {
  await p.goto(`${h.rpOrigin}/login`);
  await p.locator('#use-test-citizens').click();
  await p.locator('#f-username').fill('an');
  await p.locator('#f-password').fill('demo');
  await p.locator('#submit').click();
  await p.waitForURL((u) => u.origin === h.rpOrigin);
}

/** From a console page that asked for a sign-in, through VNeID, back at the console. */
async function consoleSignIn(p, username) {
  await p.goto(`${BROKER}/console`);
  if (new URL(p.url()).pathname !== '/console') {
    // A choice between strong sources, or VNeID at once (the only one).
    const vneid = p.locator('#use-vneid');
    if (await vneid.count()) await vneid.click();
    await atVneid(p, username);
  }
  await p.waitForURL((u) => u.origin === BROKER && u.pathname === '/console');
  await p.locator('#operator').waitFor();
}

async function version(p) {
  await p.goto(`${BROKER}/console/config`);
  return Number(await p.locator('input[name=version]').first().getAttribute('value'));
}

h.run(async () => {
  const adminContext = await h.newContext();
  const admin = await adminContext.newPage();

  await h.scenario('a password alone does not open the console', async () => {
    await passwordLogin(admin);
    const r = await admin.goto(`${BROKER}/console`);
    check(r.status() === 403, `status ${r.status()}`);
    check((await admin.locator('body').innerText()).includes('not strong enough'), 'says why');
    const problems = await axe(admin, 'refusal');
    check(problems.length === 0, problems.join('\n'));
    check(await admin.locator('a[href^="/console/signin"]').count() === 1, 'a way on: sign in with a stronger way');
  }, admin);

  await h.scenario('the admin steps up through VNeID at high and reaches the console', async () => {
    await admin.locator('a[href^="/console/signin"]').click();
    const vneid = admin.locator('#use-vneid');
    await Promise.race([vneid.waitFor(), admin.locator('#citizen-an').waitFor()]);
    if (await vneid.count()) await vneid.click();
    await atVneid(admin, 'an');
    await admin.waitForURL((u) => u.origin === BROKER && u.pathname === '/console');
    const who = await admin.locator('#operator').innerText();
    check(who.includes('An Admin') && who.includes('admin'), `operator shown: ${who}`);
    check(await admin.locator('#instances tbody tr').count() >= 2, 'both instances reported');
    await h.screenshot(admin, 'console-overview.png');
  }, admin);

  await h.scenario('every console page passes axe-core in four languages', async () => {
    const found = [];
    for (const lang of ['en', 'vi', 'zh', 'es']) {
      for (const path of ['/console', '/console/config', '/console/history', '/console/maintenance', '/console/reviews', '/console/audit']) {
        await admin.goto(`${BROKER}${path}?ui_locales=${lang}`);
        check((await admin.getAttribute('html', 'lang')) === lang, `${path} in ${lang}`);
        found.push(...(await axe(admin, `${path} (${lang})`)));
      }
    }
    await admin.setViewportSize({ width: 820, height: 1180 });
    await admin.goto(`${BROKER}/console/config`);
    const { scrollWidth, innerWidth } = await admin.evaluate(() => ({ scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth }));
    if (scrollWidth > innerWidth) found.push(`tablet: overflows (${scrollWidth} > ${innerWidth})`);
    await admin.setViewportSize({ width: 1280, height: 800 });
    check(found.length === 0, found.join('\n'));
  }, admin);

  await h.scenario('a broken connector is refused with its key, nothing applied', async () => {
    const before = await version(admin);
    const doc = admin.locator('#document');
    await doc.fill((await doc.inputValue()) + BROKEN);
    await admin.locator('#check').click();
    await admin.locator('#problems').waitFor();
    const text = await admin.locator('#problems').innerText();
    check(text.includes('connectors["broken-idp"].settings'), `problems: ${text}`);
    check(await admin.locator('#apply').count() === 0, 'no Apply for a refused draft');
    await h.screenshot(admin, 'console-refused.png');
    check((await version(admin)) === before, 'nothing published');
  }, admin);

  let added = 0;
  await h.scenario('a new upstream provider is added and a citizen signs in through it, no restart', async () => {
    const doc = admin.locator('#document');
    await doc.fill((await doc.inputValue()) + NEW_PROVIDER);
    await admin.locator('#check').click();
    await admin.locator('#diff').waitFor();
    check((await admin.locator('#diff').innerText()).includes('+ id = "vneid2"'), 'the difference shows the new connector');
    await admin.locator('#note').fill('second provider');
    await admin.locator('#apply').click();
    await admin.locator('#notice').waitFor();
    const notice = await admin.locator('#notice').innerText();
    const m = notice.match(/Version (\d+)/);
    check(m, `notice: ${notice}`);
    added = Number(m[1]);
    const citizen = await h.newContext();
    try {
      const p = await citizen.newPage();
      const before = h.rp.results.length;
      await p.goto(`${h.rpOrigin}/login`);
      await p.locator('#use-vneid2').click();
      await p.waitForURL((u) => u.origin === new URL(VNEID2).origin);
      await atVneid(p, 'binh');
      const r = await h.readCallback(p, before);
      check(typeof r.claims.sub === 'string' && r.claims.sub.length > 0, 'an ID token with a sub');
    } finally {
      await citizen.close();
    }
  }, admin);

  await h.scenario('a bank in maintenance is refused with the message on the other instance', async () => {
    await admin.goto(`${BROKER}/console/maintenance`);
    const form = admin.locator('form[id="m-bank/icbc"]');
    await form.locator('input[name=message_en]').fill('ICBC is moving to a new system tonight.');
    await form.locator('button[value=on]').click();
    await admin.locator('#notice').waitFor();
    const citizen = await h.newContext();
    try {
      const p = await citizen.newPage();
      await p.goto(`${h.rpOrigin}/login`);
      await p.locator('#use-bank').waitFor();
      // The same login on the other instance (cookies are shared across ports).
      const path = new URL(p.url()).pathname;
      await p.goto(`${TWIN}${path}`);
      await p.locator('#use-bank').click();
      await p.locator('#f-card_number').waitFor();
      // The card is checked by the other instance (the form posts there; its answer sends
      // the browser back to the login page at the issuer).
      const deadline = Date.now() + 5000;
      let text = '';
      let answered = '';
      do {
        if (new URL(p.url()).origin !== new URL(TWIN).origin) await p.goto(`${TWIN}${new URL(p.url()).pathname}`);
        await p.locator('#f-name').fill('王伟');
        await p.locator('#f-id_number').fill('110101199003074517');
        await p.locator('#f-card_number').fill('6222 0202 0011 2345 679');
        await p.locator('#f-phone').fill('13800138000');
        const post = p.waitForRequest((r) => r.method() === 'POST');
        await p.locator('#submit').click();
        answered = (await post).url();
        await p.locator('#f-card_number').waitFor();
        text = await p.locator('body').innerText();
      } while (!text.includes('moving to a new system') && Date.now() < deadline);
      check(answered.startsWith(TWIN), `the card went to the other instance: ${answered}`);
      check(text.includes('ICBC is moving to a new system tonight.'), `the citizen sees the message: ${text.slice(0, 400)}`);
    } finally {
      await citizen.close();
    }
    await admin.goto(`${BROKER}/console/maintenance`);
    await admin.locator('form[id="m-bank/icbc"] button[value=off]').click();
    await admin.locator('#notice').waitFor();
  }, admin);

  await h.scenario('rolling back removes the new provider everywhere', async () => {
    await admin.goto(`${BROKER}/console/history`);
    await admin.locator(`#rollback-${added - 1}`).click();
    await admin.locator('#notice').waitFor();
    check((await admin.locator('#notice').innerText()).includes(`brings back version ${added - 1}`), 'rolled back');
    await admin.goto(`${BROKER}/console`);
    check(!(await admin.locator('#connectors').innerText()).includes('vneid2'), 'gone from this instance');
  }, admin);

  await h.scenario('a review item is closed from the queue', async () => {
    await admin.goto(`${BROKER}/console/reviews`);
    const row = admin.locator('#queue tr', { hasText: REVIEW_ID });
    await row.locator('button[value=keep]').click();
    await admin.locator('#notice').waitFor();
    check((await admin.locator('body').innerText()).includes('The item is closed.'), 'closed');
    check(await admin.locator('#queue tr', { hasText: REVIEW_ID }).count() === 0, 'no longer waiting');
    await admin.goto(`${BROKER}/console/audit?event=review.`);
    check((await admin.locator('#audit').innerText()).includes('An Admin'), 'audited with the operator');
  }, admin);

  await h.scenarioInFreshContext('a viewer sees and cannot change anything', async (p) => {
    await consoleSignIn(p, 'lan');
    check((await p.locator('#operator').innerText()).includes('viewer'), 'a viewer');
    await p.goto(`${BROKER}/console/config`);
    check(await p.locator('textarea').count() === 0, 'no editor');
    await p.goto(`${BROKER}/console/maintenance`);
    check(await p.locator('button[value=on]').count() === 0, 'no maintenance buttons');
    await p.goto(`${BROKER}/console/reviews`);
    const csrf = await p.locator('input[name=csrf]').first().getAttribute('value');
    const r = await p.request.post(`${BROKER}/console/maintenance`, { form: { csrf, key: 'bank', action: 'on', message_en: 'x' } });
    check(r.status() === 403, `a forged form is refused: ${r.status()}`);
    const rb = await p.request.post(`${BROKER}/console/history/1/rollback`, { form: { csrf } });
    check(rb.status() === 403, `a rollback is refused: ${rb.status()}`);
    if (r.status() !== 403) throw new Failure('the viewer changed something');
  });
});
