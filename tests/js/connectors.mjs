// The identity sources of issue #4 driven in real headless Chromium (playwright-core with
// Debian's /usr/bin/chromium), with panva's openid-client as the relying party:
//
// 1. bank card + SMS code: the form, then the code read from the simulated SMS inbox page
//    in a second tab (the citizen's phone);
// 2. CTID: the wait page with its QR code; the "phone app" page approves in a second tab,
//    and the waiting page continues by itself (its script polls);
// 3. an old portal account (username and password).
//
// The shared machinery is in lib/harness.mjs.
//
//   ISSUER=http://127.0.0.1:18080 CLIENT_ID=js-rp CLIENT_SECRET=... RP_PORT=18081 \
//   SMS_INBOX=http://127.0.0.1:18084/inbox node tests/js/connectors.mjs
//
// Optional: BANK_ID (default bank-card), CTID_ID (ctid), LEGACY_ID (old-portal),
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 90000).

import { Harness, check } from './lib/harness.mjs';

const h = new Harness({
  prefix: 'connectors e2e',
  scenarios: 3,
  timeoutMs: 90000,
  scope: 'openid profile citizen_id',
  contextTimeoutMs: 20000,
});
const SMS_INBOX = h.need('SMS_INBOX');
const BANK_ID = process.env.BANK_ID || 'bank-card';
const CTID_ID = process.env.CTID_ID || 'ctid';
const LEGACY_ID = process.env.LEGACY_ID || 'old-portal';
const RP_ORIGIN = h.rpOrigin;

h.run(async () => {
  await h.scenarioInFreshContext('bank card and the SMS code read on the "phone"', async (p, context) => {
    const before = h.results.length;
    await p.goto(`${RP_ORIGIN}/login?ui_locales=zh`);
    await p.locator(`#use-${BANK_ID}`).click();
    await p.locator('#f-card_number').waitFor();
    const notice = await p.locator('#notice').innerText();
    check(notice.includes('工商银行'), `the partner banks are listed: ${notice}`);
    await h.screenshot(p, 'bank-form.png');
    await p.locator('#f-name').fill('王伟');
    await p.locator('#f-id_number').fill('110101199003074517');
    await p.locator('#f-card_number').fill('6222 0202 0011 2345 679');
    await p.locator('#f-phone').fill('138 0013 8000');
    await p.locator('#submit').click();
    await p.locator('#f-code').waitFor();
    await h.screenshot(p, 'bank-code.png');
    // The citizen's phone: the simulated SMS inbox.
    const phone = await context.newPage();
    await phone.goto(`${SMS_INBOX}?to=${encodeURIComponent('+8613800138000')}`);
    const sms = await phone.locator('#messages .text').first().innerText();
    await h.screenshot(phone, 'sms-inbox.png');
    const code = (sms.match(/(?<!\d)\d{6}(?!\d)/) || [])[0];
    check(code, `no 6-digit code in the SMS: ${sms}`);
    await phone.close();
    await p.locator('#f-code').fill(code);
    await p.locator('#submit').click();
    const { claims: c } = await h.readCallback(p, before);
    check(c.name === '王伟', `name ${c.name}`);
    check(c.citizen_id === '110101199003074517', `citizen_id ${c.citizen_id}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/substantial', `acr ${c.acr}`);
    check(Array.isArray(c.amr) && c.amr.includes('sms'), `amr ${JSON.stringify(c.amr)}`);
  });

  await h.scenarioInFreshContext('CTID: QR code, approval in the app, the page continues by itself', async (p, context) => {
    const before = h.results.length;
    await p.goto(`${RP_ORIGIN}/login?acr_values=${encodeURIComponent('http://eidas.europa.eu/LoA/high')}`);
    // CTID is the only source that reaches `high`: the login goes straight to its QR code.
    await p.locator('#qr').waitFor();
    check(await p.locator(`#use-${CTID_ID}`).count() === 0, 'no choice page for a single source');
    const natural = await p.locator('#qr').evaluate((img) => img.naturalWidth);
    check(natural > 0, 'the QR code image renders');
    await h.screenshot(p, 'ctid-wait.png');
    const link = await p.locator('#app-link').getAttribute('href');
    check(link && link.includes('/app/'), `app link ${link}`);
    // The phone: opening the link stands for scanning the QR code.
    const phone = await context.newPage();
    await phone.goto(link);
    // The waiting page shows the progress by itself.
    await p.waitForFunction(() => document.getElementById('instruction')?.textContent.includes('scanned'), null, {
      timeout: 20000,
    });
    await h.screenshot(p, 'ctid-scanned.png');
    await phone.locator('#citizen').selectOption('an');
    await phone.locator('#approve').click();
    await phone.locator('#done').waitFor();
    await phone.close();
    // No click here: the wait page's script polls and lands on the platform.
    const { claims: c } = await h.readCallback(p, before);
    check(c.name === 'Nguyễn Văn An', `name ${c.name}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/high', `acr ${c.acr}`);
    check(Array.isArray(c.amr) && c.amr.includes('face'), `amr ${JSON.stringify(c.amr)}`);
  });

  await h.scenarioInFreshContext('old portal account', async (p) => {
    const before = h.results.length;
    await p.goto(`${RP_ORIGIN}/login?ui_locales=vi`);
    await p.locator(`#use-${LEGACY_ID}`).click();
    await p.locator('#f-username').waitFor();
    const notice = await p.locator('#notice').innerText();
    check(notice.includes('VNeID'), `the end date and the alternatives are shown: ${notice}`);
    await h.screenshot(p, 'legacy-form.png');
    await p.locator('#f-username').fill('nguyenvanan');
    await p.locator('#f-password').fill('matkhau-cu');
    await p.locator('#submit').click();
    const { claims: c } = await h.readCallback(p, before);
    check(c.name === 'Nguyễn Văn An', `name ${c.name}`);
    check(c.acr === 'http://eidas.europa.eu/LoA/low', `acr ${c.acr}`);
  });
});
