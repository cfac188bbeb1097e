// End-to-end test of the broker with real third-party software: panva's `openid-client`
// (v6) is the relying party and Debian's headless Chromium, driven by `playwright-core`,
// is the citizen's browser. See README.md beside this file; the shared machinery is in
// lib/harness.mjs.
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   USERNAME=an PASSWORD=demo EXPECT_NAME='Nguyễn Văn An' node tests/js/login.mjs
//
// Optional: SCREENSHOT_DIR (PNG files of the pages), ID_TOKEN_ALG (the client's
// registered id_token_signed_response_alg, default RS256), CHROMIUM (default
// /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import { Harness, check } from './lib/harness.mjs';

const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG || 'RS256';
const h = new Harness({
  prefix: 'openid-client e2e',
  scenarios: 4,
  timeoutMs: 60000,
  scope: 'openid profile',
  idTokenAlg: ID_TOKEN_ALG,
});
const USERNAME = h.need('USERNAME');
const PASSWORD = h.need('PASSWORD');
const EXPECT_NAME = h.need('EXPECT_NAME');
const { rpOrigin: RP_ORIGIN, brokerOrigin: BROKER_ORIGIN } = h;

/** A new page with its main-frame navigations and all its navigation requests recorded. */
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

h.run(async () => {
  // Scenario 1: a full login through the choice page and the test-citizens form.
  const ctx1 = await h.newContext();
  const t1 = await newTrackedPage(ctx1);
  let first;
  const ok1 = await h.scenario(
    'login through the choice page and the form',
    async () => {
      const before = h.results.length;
      await t1.p.goto(`${RP_ORIGIN}/login`);
      await t1.p.locator('#use-test-citizens').waitFor();
      check(new URL(t1.p.url()).origin === BROKER_ORIGIN, `choice page is not on the broker: ${t1.p.url()}`);
      await h.screenshot(t1.p, 'choice.png');
      await t1.p.locator('#use-test-citizens').click();
      await t1.p.locator('#f-username').waitFor();
      await t1.p.locator('#f-username').fill(USERNAME);
      await t1.p.locator('#f-password').fill(PASSWORD);
      await t1.p.locator('#submit').click();
      const r = await h.readCallback(t1.p, before);
      await h.screenshot(t1.p, 'claims.png');
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
    t1.p,
  );

  // Scenario 2: the same browser asks again; its SSO session answers without a login page.
  const sso = 'silent SSO with ui_locales=vi returns the same subject';
  if (ok1) {
    await h.scenario(
      sso,
      async () => {
        const before = h.results.length;
        t1.navigations.length = 0;
        t1.requests.length = 0;
        await t1.p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
        const r = await h.readCallback(t1.p, before);
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
        await h.screenshot(t1.p, 'claims-sso.png');
      },
      t1.p,
    );
  } else {
    h.skip(sso, 'the first login failed');
  }
  await ctx1.close();

  // Scenario 3: a fresh browser (no cookies) asking for Vietnamese sees the choice page in
  // Vietnamese, although the browser itself prefers English.
  await h.scenarioInFreshContext('fresh browser with ui_locales=vi gets the Vietnamese choice page', async (p) => {
    await p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
    await p.locator('#use-test-citizens').waitFor();
    await h.screenshot(p, 'choice-vi.png');
    const lang = await p.locator('html').getAttribute('lang');
    check(lang === 'vi', `<html lang> is ${JSON.stringify(lang)}, expected "vi"`);
    const h1 = (await p.locator('h1').first().innerText()).trim();
    check(h1 === 'Chọn cách đăng nhập', `h1 is ${JSON.stringify(h1)}, expected "Chọn cách đăng nhập"`);
  });

  // Scenario 4: openid-client pushes the request (RFC 9126); the browser's /authorize URL
  // holds only client_id and request_uri, and the pushed ui_locales still apply.
  await h.scenarioInFreshContext('pushed authorization request (PAR) through openid-client', async (p) => {
    const authorizeUrls = [];
    p.on('request', (req) => {
      const u = new URL(req.url());
      if (u.origin === BROKER_ORIGIN && u.pathname === '/authorize') authorizeUrls.push(u);
    });
    const before = h.results.length;
    await p.goto(`${RP_ORIGIN}/login?par=1&ui_locales=vi`);
    await p.locator('#use-test-citizens').waitFor();
    check(authorizeUrls.length === 1, `expected one /authorize request, saw ${authorizeUrls.length}`);
    const names = [...authorizeUrls[0].searchParams.keys()].sort().join(',');
    check(names === 'client_id,request_uri', `/authorize carried ${names}, expected only client_id,request_uri`);
    const lang = await p.locator('html').getAttribute('lang');
    check(lang === 'vi', `<html lang> is ${JSON.stringify(lang)}: the pushed ui_locales=vi was lost`);
    await p.locator('#use-test-citizens').click();
    await p.locator('#f-username').fill(USERNAME);
    await p.locator('#f-password').fill(PASSWORD);
    await p.locator('#submit').click();
    const r = await h.readCallback(p, before);
    check(r.claims.name === EXPECT_NAME, `name is ${JSON.stringify(r.claims.name)}, expected ${JSON.stringify(EXPECT_NAME)}`);
    check(r.userinfo.sub === r.claims.sub, `userinfo sub ${r.userinfo.sub} differs from ID token sub ${r.claims.sub}`);
  });
});
