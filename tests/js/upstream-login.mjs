// End-to-end test of the broker's `oidc` connector with real third-party software on both
// sides: panva's `oidc-provider` is the upstream identity provider (upstream-idp.mjs,
// started by the caller), panva's `openid-client` (v6) is the relying party, and Debian's
// headless Chromium, driven by `playwright-core`, is the citizen's browser. Started by
// tests/e2e/upstream_oidc.rs; the shared machinery is in lib/harness.mjs.
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   CONNECTOR=idp UPSTREAM_ISSUER=http://127.0.0.1:18090 USERNAME=an PASSWORD=demo \
//   EXPECT_NAME='Nguyễn Văn An' EXPECT_CITIZEN_ID=079201001234 EXPECT_BIRTHDATE=1990-03-15 \
//   EXPECT_ACR=http://eidas.europa.eu/LoA/high node tests/js/upstream-login.mjs
//
// Optional: SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default
// 60000). Ends with `upstream e2e: N passed, M failed`; exit status 0 only when both
// scenarios passed.

import { Harness, check } from './lib/harness.mjs';

const h = new Harness({ prefix: 'upstream e2e', scenarios: 2, timeoutMs: 60000, scope: 'openid profile citizen_id' });
const CONNECTOR = h.need('CONNECTOR');
const UPSTREAM_ORIGIN = new URL(h.need('UPSTREAM_ISSUER')).origin;
const USERNAME = h.need('USERNAME');
const PASSWORD = h.need('PASSWORD');
const EXPECT_NAME = h.need('EXPECT_NAME');
const EXPECT_CITIZEN_ID = h.need('EXPECT_CITIZEN_ID');
const EXPECT_BIRTHDATE = h.need('EXPECT_BIRTHDATE');
const EXPECT_ACR = h.need('EXPECT_ACR');
const { rpOrigin: RP_ORIGIN, brokerOrigin: BROKER_ORIGIN } = h;

h.run(async () => {
  // Scenario 1: choose the upstream provider, sign in there, land back at the platform.
  await h.scenarioInFreshContext('login through the upstream oidc-provider', async (p) => {
    const before = h.results.length;
    await p.goto(`${RP_ORIGIN}/login`);
    await p.locator(`#use-${CONNECTOR}`).waitFor();
    check(new URL(p.url()).origin === BROKER_ORIGIN, `choice page is not on the broker: ${p.url()}`);
    await h.screenshot(p, 'upstream-choice.png');
    await p.locator(`#use-${CONNECTOR}`).click();
    await p.locator('#username').waitFor();
    check(new URL(p.url()).origin === UPSTREAM_ORIGIN, `login page is not at the upstream provider: ${p.url()}`);
    await h.screenshot(p, 'upstream-login.png');
    await p.locator('#username').fill(USERNAME);
    await p.locator('#password').fill(PASSWORD);
    await p.locator('#submit').click();
    const r = await h.readCallback(p, before);
    await h.screenshot(p, 'upstream-claims.png');
    const c = r.claims;
    check(c.name === EXPECT_NAME, `name is ${JSON.stringify(c.name)}, expected ${JSON.stringify(EXPECT_NAME)}`);
    check(c.citizen_id === EXPECT_CITIZEN_ID, `citizen_id is ${JSON.stringify(c.citizen_id)}, expected ${EXPECT_CITIZEN_ID}`);
    check(c.birthdate === EXPECT_BIRTHDATE, `birthdate is ${JSON.stringify(c.birthdate)}, expected ${EXPECT_BIRTHDATE}`);
    check(c.acr === EXPECT_ACR, `acr is ${JSON.stringify(c.acr)}, expected ${EXPECT_ACR}`);
    check(Array.isArray(c.amr) && c.amr.includes('hwk'), `amr ${JSON.stringify(c.amr)} does not pass on the upstream "hwk"`);
    check(r.userinfo.sub === c.sub, `userinfo sub ${r.userinfo.sub} differs from ID token sub ${c.sub}`);
    check(r.userinfo.citizen_id === EXPECT_CITIZEN_ID, `userinfo citizen_id ${JSON.stringify(r.userinfo.citizen_id)}`);
  });

  // Scenario 2: the citizen cancels at the upstream provider; the broker says so in their
  // language and offers the other ways to sign in.
  await h.scenarioInFreshContext('cancel at the upstream provider, then choose another way', async (p) => {
    await p.goto(`${RP_ORIGIN}/login`);
    await p.locator(`#use-${CONNECTOR}`).click();
    await p.locator('#cancel').click();
    await p.waitForURL((u) => u.origin === BROKER_ORIGIN && u.pathname.startsWith('/callback/'), { waitUntil: 'load' });
    const text = await p.locator('body').innerText();
    check(text.includes('You cancelled the sign-in'), `the broker page does not say the citizen cancelled: ${text}`);
    await h.screenshot(p, 'upstream-cancelled.png');
    await p.locator('a', { hasText: 'Choose another way to sign in' }).click();
    await p.locator(`#use-${CONNECTOR}`).waitFor();
    check(new URL(p.url()).pathname.startsWith('/login/'), `not back at the choice page: ${p.url()}`);
  });
});
