// The citizen pages of every identity source, checked in headless Chromium in the four
// languages at four widths (1280×800, 390×844, 360×740 and 320×640): each page is checked with
// axe-core (any violation of impact "serious" or "critical" fails) and for horizontal
// overflow (WCAG 1.4.10 Reflow: document.scrollingElement.scrollWidth > innerWidth fails),
// and must not show a raw message key. Some pages check more (values kept after an error,
// numeric keyboards, the bank's remedies as a list, the resend countdown).
//
// A scenario is one page in one language (its four widths inside); the shared machinery is
// in lib/harness.mjs.
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   node tests/js/pages.mjs
//
// Optional: BANK_ID (default bank-card), CTID_ID (ctid), LEGACY_ID (old-portal),
// TEST_ID (test-citizens), VNEID_ID (vneid), LANGUAGES (default "en vi zh es"), SCREENSHOT_DIR, CHROMIUM,
// E2E_TIMEOUT_MS (default 900000).

import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Harness, check } from './lib/harness.mjs';

const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
  { width: 360, height: 740 },
  { width: 320, height: 640 },
];
const LANGUAGES = (process.env.LANGUAGES || 'en vi zh es').split(/\s+/).filter(Boolean);
const BANK_ID = process.env.BANK_ID || 'bank-card';
const CTID_ID = process.env.CTID_ID || 'ctid';
const LEGACY_ID = process.env.LEGACY_ID || 'old-portal';
const TEST_ID = process.env.TEST_ID || 'test-citizens';
const VNEID_ID = process.env.VNEID_ID || 'vneid';

// Each page: a name and how to reach it from a fresh browser in language `lang`.
// `h.rpOrigin` starts a login at the relying party; `h.issuer` is the broker.
const PAGES = [
  ['choice of identity sources', async (p, lang) => {
    await start(p, lang);
  }, async (p, lang) => {
    // The platform's name in the page's language (a per-language name in its configuration).
    const platform = await p.locator('p strong').first().innerText();
    check(platform === PLATFORM[lang], `the platform is called ${JSON.stringify(platform)}, expected ${JSON.stringify(PLATFORM[lang])}`);
    // Each button is named after its source ("Continue with …").
    const label = await p.locator(`#use-${BANK_ID}`).innerText();
    const name = await p.locator(`#use-${BANK_ID}`).locator('xpath=..').locator('strong').innerText();
    check(label.includes(name), `the button of ${name} says ${JSON.stringify(label)}`);
  }],
  ['test account form', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${TEST_ID}`).click();
    await p.locator('#f-username').waitFor();
  }, async (p) => {
    // A way back to the choice that keeps the login, beside cancelling it.
    check(await p.locator('#cancel').isVisible(), 'cancelling the login stays possible');
    await p.locator('#other-way').click();
    await p.locator(`#use-${TEST_ID}`).waitFor();
    await p.locator(`#use-${TEST_ID}`).click();
    await p.locator('#f-username').waitFor();
  }],
  ['test account form after a wrong password', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${TEST_ID}`).click();
    await p.locator('#f-username').fill(`nobody-${lang}`);
    await p.locator('#f-password').fill('wrong');
    await p.locator('#submit').click();
    await p.locator('#problem').waitFor();
  }, async (p, lang) => {
    // What was typed is kept, never the password.
    check((await p.locator('#f-username').inputValue()) === `nobody-${lang}`, 'the username is kept after an error');
    check((await p.locator('#f-password').inputValue()) === '', 'the password is never filled in again');
  }],
  ['bank card form', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${BANK_ID}`).click();
    await p.locator('#f-card_number').waitFor();
  }, async (p) => {
    check((await p.locator('#f-card_number').getAttribute('inputmode')) === 'numeric', 'the card number gets a numeric keyboard');
    check((await p.locator('#f-phone').getAttribute('type')) === 'tel', 'the phone gets a phone keyboard');
  }],
  ['bank card: the bank does not know these details (remedies)', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${BANK_ID}`).click();
    await fillBank(p, '139 0000 0000');
    await p.locator('#problem').waitFor();
  }, async (p) => {
    const steps = await p.locator('#remedies li').count();
    check(steps === 4, `the bank's four remedies are a list, found ${steps} items`);
    check((await p.locator('#f-name').inputValue()) === '王伟', 'the name is kept after an error');
    check((await p.locator('#f-phone').inputValue()) !== '', 'the phone is kept after an error');
    check((await p.locator('#f-card_number').inputValue()) === '', 'the card number is never filled in again');
  }],
  ['bank card: the SMS code', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${BANK_ID}`).click();
    await fillBank(p, '138 0013 8000');
    await p.locator('#f-code').waitFor();
  }, async (p) => {
    check((await p.locator('#f-code').getAttribute('inputmode')) === 'numeric', 'the code gets a numeric keyboard');
    // The page's script (loaded after the form) disables the button and shows the countdown.
    const disabled = await p
      .waitForFunction(() => document.getElementById('resend')?.disabled === true, null, { timeout: 10000 })
      .then(() => true, () => false);
    check(disabled, 'a new code cannot be asked for before the cooldown ends');
    await p.locator('#resend-wait').waitFor({ state: 'visible' });
    const wait = await p.locator('#resend-wait').innerText();
    check(/\d/.test(wait), `the countdown is shown: ${JSON.stringify(wait)}`);
    // The demo's inbox opens beside the code page and finds the number as the README writes it.
    const link = p.locator('#inbox-link');
    check((await link.getAttribute('target')) === '_blank' && (await link.getAttribute('rel')) === 'noopener', 'the inbox opens in a new tab');
    const phone = await p.context().newPage();
    await phone.goto(`${await link.getAttribute('href')}?to=13800138000`);
    const sms = await phone.locator('#messages .text').first().innerText();
    check(/(?<!\d)\d{6}(?!\d)/.test(sms), `the inbox shows the code for 13800138000: ${sms}`);
    await phone.close();
  }],
  ['CTID waiting page', async (p, lang) => {
    await start(p, lang);
    // Without its script the page stays put (it polls by reloading) while it is checked.
    await p.route('**/assets/wait.js', (r) => r.abort());
    await p.locator(`#use-${CTID_ID}`).click();
    await p.locator('#qr').waitFor();
  }, async (p) => {
    // "Open the app" opens beside the waiting page, which keeps polling.
    const link = p.locator('#app-link');
    check((await link.getAttribute('target')) === '_blank' && (await link.getAttribute('rel')) === 'noopener', 'the app link opens in a new tab');
  }],
  ['old portal form', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${LEGACY_ID}`).click();
    await p.locator('#f-username').waitFor();
  }, async (p, lang) => {
    // Its end date as people of the language write dates.
    const notice = await p.locator('#notice').innerText();
    check(notice.includes(UNTIL[lang]), `the end date is written ${JSON.stringify(UNTIL[lang])}: ${notice}`);
  }],
  ['VNeID: cancelled at the identity provider', async (p, lang) => {
    await start(p, lang);
    await p.locator(`#use-${VNEID_ID}`).click();
    await p.locator('#cancel').click();
    await p.waitForURL((u) => u.origin === h.brokerOrigin);
    await p.locator('#message').waitFor();
  }, async (p, lang) => {
    // A heading that fits the failure, not "Something went wrong".
    const heading = await p.locator('h1').innerText();
    check(heading === CANCELLED[lang], `heading ${JSON.stringify(heading)}, expected ${JSON.stringify(CANCELLED[lang])}`);
    check(await p.locator('#reference').count() === 1, 'the reference is given for support');
  }],
  ['error page: unknown platform', async (p, lang) => {
    await p.goto(`${h.issuer}/authorize?client_id=nobody&response_type=code&ui_locales=${lang}`);
    await p.locator('#message').waitFor();
  }, async (p) => {
    // The English technical note is only under "Details for support", with the reference.
    check(!(await p.locator('#detail').isVisible()), 'the technical detail is folded away');
    check(await p.locator('#support summary').isVisible(), 'the "details for support" line is shown');
    check(((await p.locator('#reference').textContent()) || '').length > 0, 'with a reference');
  }],
  ['account page without a session', async (p, lang) => {
    await p.goto(`${h.issuer}/account?ui_locales=${lang}`);
    await p.locator('#action').waitFor();
  }, async (p) => {
    const href = await p.locator('#action').getAttribute('href');
    check(href && href.startsWith('/account/signin'), `"Sign in" goes to the account page's login: ${href}`);
  }],
  ['account page', async (p, lang) => {
    await signIn(p, lang);
    await p.goto(`${h.issuer}/account?ui_locales=${lang}`);
    await p.locator('#sign-out').waitFor();
  }, async (p, lang) => {
    const platforms = await p.locator('#platforms').innerText();
    check(platforms.includes(PLATFORM[lang]), `the platforms of this session: ${JSON.stringify(platforms)}`);
    check(await p.locator('nav.languages a').count() === 4, 'a language menu');
  }],
  ['still signed in after "Stay signed in"', async (p, lang) => {
    await signIn(p, lang);
    await p.goto(`${h.issuer}/logout?ui_locales=${lang}`);
    await p.locator('#stay').click();
    await p.locator('#message').waitFor();
  }, async (p) => {
    check(await p.locator('#logged-out').count() === 0, 'not the logged-out page');
    check(await p.locator('#action').count() === 1, 'a way on');
  }],
  ['logged out', async (p, lang) => {
    await p.goto(`${h.issuer}/logout?ui_locales=${lang}`);
    await p.locator('#logged-out').waitFor();
  }],
];

// The heading of a cancelled login, per language (broker/locales/*/main.ftl).
const CANCELLED = { en: 'You cancelled', vi: 'Bạn đã hủy', zh: '您已取消', es: 'Ha cancelado' };

// The platform's names in tests/e2e/pages_browser.rs, and the old portal's end date there.
const PLATFORM = { en: 'openid-client platform', vi: 'Nền tảng openid-client', zh: 'openid-client 平台', es: 'Plataforma openid-client' };
const UNTIL = { en: '31 December 2099', vi: '31/12/2099', zh: '2099年12月31日', es: '31 de diciembre de 2099' };

const h = new Harness({
  prefix: 'pages e2e',
  scenarios: PAGES.length * LANGUAGES.length,
  timeoutMs: 900000,
  scope: 'openid profile citizen_id',
  contextTimeoutMs: 20000,
});

async function start(p, lang) {
  await p.goto(`${h.rpOrigin}/login?ui_locales=${lang}`);
  await p.locator(`#use-${TEST_ID}`).waitFor();
}

/** Signs the test citizen in at the platform, in `lang`. */
async function signIn(p, lang) {
  await start(p, lang);
  await p.locator(`#use-${TEST_ID}`).click();
  await p.locator('#f-username').fill('an');
  await p.locator('#f-password').fill('demo');
  await p.locator('#submit').click();
  await p.waitForURL((u) => u.origin === h.rpOrigin);
}

async function fillBank(p, phone) {
  await p.locator('#f-name').fill('王伟');
  await p.locator('#f-id_number').fill('110101199003074517');
  await p.locator('#f-card_number').fill('6222 0202 0011 2345 679');
  await p.locator('#f-phone').fill(phone);
  await p.locator('#submit').click();
}

/** What is wrong with the page as shown now: a list of sentences (empty when nothing). */
async function problems(p, label) {
  const found = [];
  const { scrollWidth, innerWidth } = await p.evaluate(() => ({
    scrollWidth: document.scrollingElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) {
    const wide = await p.evaluate(() =>
      [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .slice(0, 5)
        .map((e) => `<${e.tagName.toLowerCase()}${e.id ? ` id=${e.id}` : ''}> ${JSON.stringify((e.textContent || '').trim().slice(0, 40))}`),
    );
    found.push(`${label}: overflows horizontally (scrollWidth ${scrollWidth} > innerWidth ${innerWidth}; WCAG 1.4.10): ${wide.join(', ')}`);
  }
  // The CSP of the pages does not apply to evaluation by the driver.
  const loaded = await p.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await p.evaluate(AXE_SOURCE);
  const result = await p.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }),
  );
  for (const v of result.violations) {
    if (v.impact !== 'serious' && v.impact !== 'critical') continue;
    const nodes = v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ');
    found.push(`${label}: axe ${v.impact} ${v.id} (${v.help}) at ${nodes}`);
  }
  // Each page its own title: what its heading says.
  const [title, h1] = [await p.title(), await p.locator('h1').first().innerText()];
  if (!title.startsWith(h1.trim())) found.push(`${label}: the title ${JSON.stringify(title)} does not name the page (${JSON.stringify(h1)})`);
  const text = await p.locator('body').innerText();
  const raw = text.match(/Unknown localization key[^\n]*/);
  if (raw) found.push(`${label}: shows a raw message key: ${raw[0]}`);
  return found;
}

h.run(async () => {
  for (const lang of LANGUAGES) {
    for (const [name, reach, expect] of PAGES) {
      await h.scenarioInFreshContext(`${name} (${lang})`, async (p) => {
        await p.setViewportSize(VIEWPORTS[0]);
        await reach(p, lang);
        if (expect) await expect(p, lang);
        const shownLang = await p.locator('html').getAttribute('lang');
        check(shownLang === lang, `the page is in ${shownLang}, expected ${lang}`);
        const found = [];
        for (const vp of VIEWPORTS) {
          await p.setViewportSize(vp);
          found.push(...(await problems(p, `${vp.width}×${vp.height}`)));
          if (vp.width === 320) await h.screenshot(p, `${name.replace(/\W+/g, '-')}-${lang}-320.png`);
        }
        check(found.length === 0, found.join('\n'));
      });
    }
  }
});
