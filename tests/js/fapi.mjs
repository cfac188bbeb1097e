// FAPI 2.0 interop test: panva's `openid-client` (a certified FAPI 2.0 relying party) drives,
// with headless Chromium as the citizen's browser, a Message Signing flow and a Security
// Profile flow against an OpenID Provider: first oidc-provider (tests/js/fapi-op.mjs, the
// certified reference), then the broker, with the same script.
//
//   ISSUER=http://127.0.0.1:18090 RP_PORT=18091 LOGIN=oidc-provider USERNAME=an PASSWORD=demo \
//   MS_CLIENT_ID=fapi-ms MS_CLIENT_KEY=ms.pem MS_CLIENT_KEY_ID=ms-1 \
//   SP_CLIENT_ID=fapi-sp SP_CLIENT_KEY=sp.pem SP_CLIENT_KEY_ID=sp-1 node tests/js/fapi.mjs
//
// Both clients authenticate with `private_key_jwt` (PKCS#8 PEM files; PS256 for RSA keys,
// ES256 for P-256 keys), push every request (PAR) with PKCE S256 and a DPoP proof, and bind
// the code to their DPoP key (`dpop_jkt`). The redirect URI is
// http://127.0.0.1:$RP_PORT/callback. LOGIN says how the browser signs in: `oidc-provider`
// (its login page: #username, #password, #submit) or `broker` (the choice page's
// #use-test-citizens, then #f-username, #f-password, #submit).
//
// Optional: SIGNED_ALG (the Message Signing client's ID token, JARM, introspection and
// UserInfo algorithm, default PS256), SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium),
// E2E_TIMEOUT_MS (default 90000). It ends with `fapi e2e: N passed, M failed` and exits 0
// only when all SCENARIOS passed.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import * as client from 'openid-client';
import { describeError, needFor } from './lib/common.mjs';
import { check, Failure, where } from './lib/harness.mjs';

const PREFIX = 'fapi e2e';
// FLOWS: which flows to run (default both); the Message Signing flow has 7 scenarios, the
// Security Profile flow 3.
const FLOWS = (process.env.FLOWS || 'message-signing,security').split(',');
const MESSAGE_SIGNING = FLOWS.includes('message-signing');
const SCENARIOS = (MESSAGE_SIGNING ? 7 : 0) + (FLOWS.includes('security') ? 3 : 0);
const need = needFor(PREFIX);

const ISSUER = need('ISSUER').replace(/\/+$/, '');
const RP_PORT = Number(need('RP_PORT'));
const LOGIN = need('LOGIN');
const USERNAME = need('USERNAME');
const PASSWORD = need('PASSWORD');
const SIGNED_ALG = process.env.SIGNED_ALG || 'PS256';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 90000);
const RP_ORIGIN = `http://127.0.0.1:${RP_PORT}`;
const REDIRECT_URI = `${RP_ORIGIN}/callback`;
if (!['oidc-provider', 'broker'].includes(LOGIN)) {
  console.error(`${PREFIX}: LOGIN must be oidc-provider or broker, got ${LOGIN}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------
// Keys

/** The client's private key as a WebCrypto key with its kid, from a PKCS#8 PEM file. */
async function clientKey(prefix) {
  const file = need(`${prefix}_CLIENT_KEY`);
  const id = need(`${prefix}_CLIENT_ID`);
  let pem;
  try {
    pem = fs.readFileSync(file);
  } catch (e) {
    console.error(`${PREFIX}: cannot read ${file}: ${e.message}`);
    process.exit(2);
  }
  const keyObject = crypto.createPrivateKey(pem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  let algorithm;
  if (keyObject.asymmetricKeyType === 'rsa') algorithm = { name: 'RSA-PSS', hash: 'SHA-256' };
  else if (keyObject.asymmetricKeyType === 'ec') algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  else {
    console.error(`${PREFIX}: ${file}: use an RSA (PS256) or P-256 (ES256) key, not ${keyObject.asymmetricKeyType}`);
    process.exit(2);
  }
  const key = await crypto.webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  return { id, key, kid: process.env[`${prefix}_CLIENT_KEY_ID`] || `${id}-key` };
}

/** RFC 7638 thumbprint of a public EC key (the DPoP keys here are ES256). */
async function thumbprint(publicKey) {
  const jwk = await crypto.webcrypto.subtle.exportKey('jwk', publicKey);
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

function jwtHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
}

const b64json = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * A DPoP proof made by hand (ES256, WebCrypto's P1363 signature is the JWS form), so that
 * each claim can be wrong on purpose: `claims` replaces or removes (undefined) defaults.
 */
async function handMadeProof(keys, claims) {
  const jwk = await crypto.webcrypto.subtle.exportKey('jwk', keys.publicKey);
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } };
  const payload = { jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = await crypto.webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, Buffer.from(input));
  return `${input}.${Buffer.from(sig).toString('base64url')}`;
}

/** The `error` auth-param of a `WWW-Authenticate: DPoP …` challenge. */
function challengeError(response) {
  const value = response.headers.get('www-authenticate') || '';
  if (!/^DPoP\b/i.test(value)) return `(not a DPoP challenge: ${value})`;
  return /error="([^"]*)"/.exec(value)?.[1] ?? '(no error)';
}

// ---------------------------------------------------------------------------------------
// The relying party: a callback server and the responses openid-client received

const callbacks = []; // URLs of /callback requests, in order
let callbackWaiter = null;
const responses = []; // { url, status, type } of every response openid-client read

const server = http.createServer((req, res) => {
  const url = new URL(req.url, RP_ORIGIN);
  if (req.method === 'GET' && url.pathname === '/callback') {
    callbacks.push(url);
    callbackWaiter?.();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end('<!doctype html><html lang="en"><head><title>Back at the platform</title></head><body><h1 id="back">Back at the platform</h1></body></html>');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});

/** Waits for the callback after `before` had been received. */
function nextCallback(before) {
  if (callbacks.length > before) return Promise.resolve(callbacks[before]);
  return new Promise((resolve) => {
    callbackWaiter = () => {
      if (callbacks.length > before) {
        callbackWaiter = null;
        resolve(callbacks[before]);
      }
    };
  });
}

async function recordingFetch(url, options) {
  const response = await fetch(url, options);
  responses.push({ url: String(url), status: response.status, type: response.headers.get('content-type') || '' });
  return response;
}

/** The content type of the last response from a URL whose path ends with `suffix`. */
function lastType(endpoint) {
  const path = new URL(endpoint).pathname;
  const r = [...responses].reverse().find((x) => new URL(x.url).pathname === path);
  return r?.type ?? '(no response)';
}

async function configure({ id, key, kid }, metadata, execute) {
  const config = await client.discovery(
    new URL(ISSUER),
    id,
    { redirect_uris: [REDIRECT_URI], response_types: ['code'], token_endpoint_auth_method: 'private_key_jwt', ...metadata },
    client.PrivateKeyJwt({ key, kid }),
    // http on loopback only; signatures of every signed answer checked against the JWKS.
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks, ...execute] },
  );
  config[client.customFetch] = recordingFetch;
  return config;
}

// ---------------------------------------------------------------------------------------
// The browser

let browser;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function screenshot(p, name) {
  if (!SCREENSHOT_DIR) return;
  try {
    fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
    await p.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
  } catch (e) {
    console.error(`${PREFIX}: could not save screenshot ${name}: ${e.message}`);
  }
}

/** Signs in at the provider's pages, starting at `authorizationUrl`; returns the callback URL. */
async function signIn(p, authorizationUrl, shot) {
  const before = callbacks.length;
  await p.goto(authorizationUrl.href);
  if (LOGIN === 'broker') {
    await p.locator('#use-test-citizens').click();
    await p.locator('#f-username').fill(USERNAME);
    await p.locator('#f-password').fill(PASSWORD);
  } else {
    await p.locator('#username').fill(USERNAME);
    await p.locator('#password').fill(PASSWORD);
  }
  await screenshot(p, `${shot}-login.png`);
  await p.locator('#submit').click();
  await p.waitForURL((u) => u.origin === RP_ORIGIN && u.pathname === '/callback', { waitUntil: 'load' });
  return nextCallback(before);
}

// ---------------------------------------------------------------------------------------
// Scenarios

const passed = [];
const failed = [];
let step = 'starting';
let aborted = false;

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
    const message = (e instanceof Failure ? e.message : describeError(e)).replace(/\x1b\[[0-9;]*m/g, '');
    failed.push(name);
    console.log(`not ok - ${name}\n    ${message.replace(/\n/g, '\n    ')}${p ? `\n    browser ${await where(p)}` : ''}`);
    if (p) await screenshot(p, `failure-${name.replace(/\W+/g, '-')}.png`);
    return false;
  }
}

function skip(name, why) {
  failed.push(name);
  console.log(`not ok - ${name}\n    skipped: ${why}`);
}

/** Starts an authorization through PAR with PKCE, state, nonce and the code bound to `dpopKeys`. */
async function authorize(config, dpop, jkt, extra, signingKey) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  let params = {
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    // RFC 9449 10: the code is bound to this key; the proof at PAR says the same.
    dpop_jkt: jkt,
    ...extra,
  };
  if (signingKey) {
    // Only the parameters inside the signed request object count (RFC 9101 5).
    params = (await client.buildAuthorizationUrlWithJAR(config, params, signingKey)).searchParams;
  }
  const url = await client.buildAuthorizationUrlWithPAR(config, params, { DPoP: dpop });
  return { url, verifier, state, nonce };
}

/** UserInfo must refuse a DPoP-bound token sent as a plain bearer token. */
async function bearerRefused(config, accessToken) {
  const endpoint = config.serverMetadata().userinfo_endpoint;
  const r = await fetch(endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
  check(r.status === 401, `UserInfo answered ${r.status} to the DPoP-bound token sent as Bearer, expected 401`);
  check(/^DPoP\b/i.test(r.headers.get('www-authenticate') || '') || /invalid_token/.test(r.headers.get('www-authenticate') || ''), `WWW-Authenticate: ${r.headers.get('www-authenticate')}`);
}

async function main() {
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(RP_PORT, '127.0.0.1', resolve);
  });
  const ms = await clientKey('MS');
  const sp = await clientKey('SP');

  step = 'discovery';
  const msConfig = await configure(
    ms,
    {
      id_token_signed_response_alg: SIGNED_ALG,
      authorization_signed_response_alg: SIGNED_ALG,
      introspection_signed_response_alg: SIGNED_ALG,
      userinfo_signed_response_alg: SIGNED_ALG,
    },
    [client.useJwtResponseMode],
  );
  const spConfig = await configure(sp, { id_token_signed_response_alg: 'ES256' }, []);
  const meta = msConfig.serverMetadata();
  check(meta.issuer === ISSUER, `discovered issuer ${meta.issuer}, expected ${ISSUER}`);
  check(meta.pushed_authorization_request_endpoint, 'no pushed_authorization_request_endpoint in discovery');
  check((meta.dpop_signing_alg_values_supported || []).includes('ES256'), `dpop_signing_alg_values_supported: ${JSON.stringify(meta.dpop_signing_alg_values_supported)}`);

  step = 'launching chromium';
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });

  if (MESSAGE_SIGNING) {
    // --- Message Signing -----------------------------------------------------------------
    const dpopKeys = await client.randomDPoPKeyPair('ES256');
    const jkt = await thumbprint(dpopKeys.publicKey);
    const dpop = client.getDPoPHandle(msConfig, dpopKeys);
    const ctx = await browser.newContext({ locale: 'en-US' });
    ctx.setDefaultTimeout(15000);
    const p = await ctx.newPage();
    let tokens;
    let current; // the latest DPoP-bound access token
    let claims;
    const s1 = 'message signing: PAR with a signed request object, JARM, DPoP-bound code and token';
    const ok1 = await scenario(
      s1,
      async () => {
        const a = await authorize(msConfig, dpop, jkt, { response_mode: 'jwt' }, { key: ms.key, kid: ms.kid });
        check(a.url.searchParams.has('request_uri') && !a.url.searchParams.has('request'), `the browser carries only client_id and request_uri: ${a.url.search}`);
        const back = await signIn(p, a.url, 'ms');
        await screenshot(p, 'ms-back.png');
        // JARM: the whole answer is one signed JWT in `response` (query.jwt for the code flow).
        check(back.searchParams.has('response'), `no JARM response parameter in ${back.search}`);
        check(!back.searchParams.has('code') && !back.searchParams.has('state'), `parameters outside the JARM response: ${back.search}`);
        const jarm = jwtHeader(back.searchParams.get('response'));
        check(jarm.alg === SIGNED_ALG, `JARM response signed with ${jarm.alg}, expected ${SIGNED_ALG}`);
        // openid-client checks the JARM JWT (signature, iss, aud, exp), state, PKCE, the DPoP
        // binding and the ID token (signature, iss, aud, nonce, alg).
        tokens = await client.authorizationCodeGrant(
          msConfig,
          back,
          { pkceCodeVerifier: a.verifier, expectedNonce: a.nonce, expectedState: a.state, idTokenExpected: true },
          undefined,
          { DPoP: dpop },
        );
        check(tokens.token_type?.toLowerCase() === 'dpop', `token_type ${tokens.token_type}, expected DPoP`);
        check(typeof tokens.refresh_token === 'string', 'no refresh token was issued');
        check(jwtHeader(tokens.id_token).alg === SIGNED_ALG, `ID token alg ${jwtHeader(tokens.id_token).alg}`);
        claims = tokens.claims();
        current = tokens.access_token;
        check(typeof claims.sub === 'string' && claims.sub !== '', 'the ID token has no sub');
      },
      p,
    );

    const s2 = 'message signing: signed UserInfo with DPoP; the token alone (Bearer) is refused';
    if (ok1) {
      await scenario(s2, async () => {
        const info = await client.fetchUserInfo(msConfig, tokens.access_token, claims.sub, { DPoP: dpop });
        check(lastType(meta.userinfo_endpoint).startsWith('application/jwt'), `UserInfo answered ${lastType(meta.userinfo_endpoint)}, expected application/jwt`);
        check(info.sub === claims.sub, `UserInfo sub ${info.sub}, ID token sub ${claims.sub}`);
        await bearerRefused(msConfig, tokens.access_token);
      });
    } else skip(s2, 'the Message Signing login failed');

    const s3 = 'message signing: signed introspection reports the DPoP key (cnf.jkt)';
    if (ok1) {
      await scenario(s3, async () => {
        const intro = await client.tokenIntrospection(msConfig, tokens.access_token);
        const type = lastType(meta.introspection_endpoint);
        check(type.startsWith('application/token-introspection+jwt'), `introspection answered ${type}, expected application/token-introspection+jwt`);
        check(intro.active === true, `introspection: ${JSON.stringify(intro)}`);
        check(intro.cnf?.jkt === jkt, `cnf.jkt ${intro.cnf?.jkt}, expected the DPoP key's ${jkt}`);
        check(intro.client_id === ms.id, `client_id ${intro.client_id}`);
      });
    } else skip(s3, 'the Message Signing login failed');

    const s4 = 'message signing: DPoP-bound refresh; the new token works with the same key only';
    if (ok1) {
      await scenario(s4, async () => {
        const refreshed = await client.refreshTokenGrant(msConfig, tokens.refresh_token, undefined, { DPoP: dpop });
        check(refreshed.token_type?.toLowerCase() === 'dpop', `token_type ${refreshed.token_type}, expected DPoP`);
        check(refreshed.access_token !== tokens.access_token, 'the refresh returned the same access token');
        const info = await client.fetchUserInfo(msConfig, refreshed.access_token, claims.sub, { DPoP: dpop });
        check(info.sub === claims.sub, `UserInfo sub ${info.sub} after the refresh`);
        current = refreshed.access_token;
        const intro = await client.tokenIntrospection(msConfig, refreshed.access_token);
        check(intro.active === true && intro.cnf?.jkt === jkt, `the refreshed token is not bound to the key: ${JSON.stringify(intro)}`);
        // A proof from another key does not make the bound token usable.
        const other = client.getDPoPHandle(msConfig, await client.randomDPoPKeyPair('ES256'));
        let refused = null;
        try {
          await client.fetchUserInfo(msConfig, refreshed.access_token, claims.sub, { DPoP: other });
        } catch (e) {
          refused = e;
        }
        check(refused !== null, 'UserInfo accepted the bound token with a proof from another key');
        check(refused.status === 401 || refused.cause?.status === 401 || /invalid_token|invalid_dpop_proof/.test(describeError(refused)), `another key: ${describeError(refused)}`);
      });
    } else skip(s4, 'the Message Signing login failed');

    const s6 = 'message signing: UserInfo refuses each bad DPoP proof with the error RFC 9449 names';
    if (ok1) {
      await scenario(s6, async () => {
        const endpoint = meta.userinfo_endpoint;
        const token = current;
        const ath = crypto.createHash('sha256').update(token).digest('base64url');
        const call = async (proof) =>
          fetch(endpoint, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
        // Without a nonce: the server hands one out (use_dpop_nonce, DPoP-Nonce).
        const first = await call(await handMadeProof(dpopKeys, { htm: 'GET', htu: endpoint, ath }));
        let nonce = first.headers.get('dpop-nonce');
        check(first.status === 401 && challengeError(first) === 'use_dpop_nonce' && nonce, `no nonce asked for: ${first.status} ${first.headers.get('www-authenticate')}`);
        // The hand-made proof is right once it carries the nonce.
        const goodProof = await handMadeProof(dpopKeys, { htm: 'GET', htu: endpoint, ath, nonce });
        const good = await call(goodProof);
        check(good.status === 200, `a correct hand-made proof got ${good.status} ${good.headers.get('www-authenticate')}`);
        nonce = good.headers.get('dpop-nonce') || nonce;
        const other = await client.randomDPoPKeyPair('ES256');
        const cases = [
          ['wrong htm', dpopKeys, { htm: 'POST', htu: endpoint, ath, nonce }, 'invalid_dpop_proof'],
          ['wrong htu', dpopKeys, { htm: 'GET', htu: `${ISSUER}/elsewhere`, ath, nonce }, 'invalid_dpop_proof'],
          ['missing ath', dpopKeys, { htm: 'GET', htu: endpoint, nonce }, 'invalid_dpop_proof'],
          ['wrong ath', dpopKeys, { htm: 'GET', htu: endpoint, ath: crypto.createHash('sha256').update('x').digest('base64url'), nonce }, 'invalid_dpop_proof'],
          // Without a nonce, so that the iat decides; a server may also answer by asking for a
          // nonce (RFC 9449 4.3: the window may come from iat or from a server nonce).
          ['future iat', dpopKeys, { htm: 'GET', htu: endpoint, ath, iat: Math.floor(Date.now() / 1000) + 600 }, 'invalid_dpop_proof use_dpop_nonce'],
          ['a nonce that was not issued', dpopKeys, { htm: 'GET', htu: endpoint, ath, nonce: 'not-issued-by-this-server' }, 'use_dpop_nonce'],
          ['another key', other, { htm: 'GET', htu: endpoint, ath, nonce }, 'invalid_token'],
        ];
        const wrong = [];
        for (const [name, keys, claims, expected] of cases) {
          const r = await call(await handMadeProof(keys, claims));
          const got = challengeError(r);
          if (r.status !== 401 || !expected.split(' ').includes(got)) wrong.push(`${name}: ${r.status} ${got}, expected 401 ${expected}`);
          nonce = r.headers.get('dpop-nonce') || nonce;
        }
        // The proof that worked once is refused the second time (jti single use).
        const replay = await call(goodProof);
        if (replay.status !== 401) wrong.push(`replayed proof: ${replay.status}, expected 401`);
        check(wrong.length === 0, wrong.join('\n'));
      });
    } else skip(s6, 'the Message Signing login failed');

    const s7 = 'message signing: a code bound by dpop_jkt is refused with another DPoP key';
    if (ok1) {
      await scenario(
        s7,
        async () => {
          // The browser still has its session: the provider answers without a login page.
          const before = callbacks.length;
          const a = await authorize(msConfig, dpop, jkt, { response_mode: 'jwt' }, { key: ms.key, kid: ms.kid });
          await p.goto(a.url.href);
          const back = await nextCallback(before);
          const thief = client.getDPoPHandle(msConfig, await client.randomDPoPKeyPair('ES256'));
          let refused = null;
          try {
            await client.authorizationCodeGrant(
              msConfig,
              back,
              { pkceCodeVerifier: a.verifier, expectedNonce: a.nonce, expectedState: a.state, idTokenExpected: true },
              undefined,
              { DPoP: thief },
            );
          } catch (e) {
            refused = e;
          }
          check(refused !== null, 'the code was redeemed with a proof from another key than dpop_jkt');
          check(refused.error === 'invalid_grant', `refused with ${describeError(refused)}, expected invalid_grant`);
        },
        p,
      );
    } else skip(s7, 'the Message Signing login failed');

    const s5 = 'message signing: a request without a signed request object is refused';
    await scenario(s5, async () => {
      let refused = null;
      try {
        await authorize(msConfig, dpop, jkt, { response_mode: 'jwt' }, null);
      } catch (e) {
        refused = e;
      }
      check(refused !== null, 'the provider accepted an unsigned pushed request from a Message Signing client');
      check(/invalid_request|invalid_request_object/.test(refused.error ?? refused.code ?? describeError(refused)), `refused with ${describeError(refused)}`);
    });
    await ctx.close();
  }

  if (FLOWS.includes('security')) {
    // --- Security Profile ------------------------------------------------------------------
    const spKeys = await client.randomDPoPKeyPair('ES256');
    const spJkt = await thumbprint(spKeys.publicKey);
    const spDpop = client.getDPoPHandle(spConfig, spKeys);
    const ctx2 = await browser.newContext({ locale: 'en-US' });
    ctx2.setDefaultTimeout(15000);
    const p2 = await ctx2.newPage();
    await scenario(
      'security profile: PAR, PKCE, private_key_jwt, DPoP; plain response with iss; JSON UserInfo',
      async () => {
        const a = await authorize(spConfig, spDpop, spJkt, {}, null);
        const back = await signIn(p2, a.url, 'sp');
        check(back.searchParams.has('code') && !back.searchParams.has('response'), `expected a plain code response: ${back.search}`);
        check(back.searchParams.get('iss') === ISSUER, `authorization response iss ${back.searchParams.get('iss')}, expected ${ISSUER} (RFC 9207)`);
        const t = await client.authorizationCodeGrant(
          spConfig,
          back,
          { pkceCodeVerifier: a.verifier, expectedNonce: a.nonce, expectedState: a.state, idTokenExpected: true },
          undefined,
          { DPoP: spDpop },
        );
        check(t.token_type?.toLowerCase() === 'dpop', `token_type ${t.token_type}, expected DPoP`);
        const c = t.claims();
        const info = await client.fetchUserInfo(spConfig, t.access_token, c.sub, { DPoP: spDpop });
        check(lastType(meta.userinfo_endpoint).startsWith('application/json'), `UserInfo answered ${lastType(meta.userinfo_endpoint)}, expected JSON`);
        check(info.sub === c.sub, `UserInfo sub ${info.sub}, ID token sub ${c.sub}`);
        await bearerRefused(spConfig, t.access_token);
      },
      p2,
    );
    await ctx2.close();

    await scenario('security profile: the client trying client_secret_basic is refused (invalid_client)', async () => {
      const r = await fetch(meta.token_endpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(sp.id)}:a-guessed-secret`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'anything' }),
      });
      const body = await r.json().catch(() => ({}));
      check(r.status === 401 && body.error === 'invalid_client', `answered ${r.status} ${JSON.stringify(body)}, expected 401 invalid_client`);
    });

    await scenario('security profile: an authorization request without PAR gets no code', async () => {
      const verifier = client.randomPKCECodeVerifier();
      const url = client.buildAuthorizationUrl(spConfig, {
        redirect_uri: REDIRECT_URI,
        response_type: 'code',
        scope: 'openid',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state: client.randomState(),
      });
      const r = await fetch(url, { redirect: 'manual' });
      const location = r.headers.get('location') || '';
      if (r.status >= 300 && r.status < 400) {
        const to = new URL(location, url);
        check(to.origin !== RP_ORIGIN || (to.searchParams.get('error') === 'invalid_request' && !to.searchParams.has('code')), `redirected to ${location}`);
      } else {
        check(r.status >= 400 && r.status < 500, `answered ${r.status}, expected a refusal`);
      }
    });
  }
}

// ---------------------------------------------------------------------------------------

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => {
    aborted = true;
    reject(new Failure(`timed out after ${TIMEOUT_MS / 1000} s (E2E_TIMEOUT_MS)`));
  }, TIMEOUT_MS);
});
let fatal = null;
try {
  const running = main();
  running.catch(() => {});
  await Promise.race([running, timeout]);
} catch (e) {
  fatal = (e instanceof Failure ? e.message : describeError(e)).replace(/\x1b\[[0-9;]*m/g, '');
} finally {
  clearTimeout(timer);
  if (browser) await browser.close().catch(() => {});
  server.closeAllConnections?.();
  server.close();
}
if (fatal) {
  console.log(`not ok - ${step}\n    ${fatal.replace(/\n/g, '\n    ')}`);
  failed.push(step);
} else if (failed.length === 0 && passed.length !== SCENARIOS) {
  console.log(`not ok - the scenarios\n    ${passed.length} passed, ${SCENARIOS} expected`);
  failed.push('the scenarios');
}
console.log(`${PREFIX}: ${passed.length} passed, ${failed.length} failed`);
process.exit(failed.length === 0 && passed.length === SCENARIOS ? 0 : 1);
