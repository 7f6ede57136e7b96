// A real OpenID provider for Warren's end-to-end tests: `node provider.mjs CONFIG.json`.
//
// It is npm's `oidc-provider` (a certified OpenID Provider) with a login page
// of our own that knows only the configured users, and consent given
// automatically. Prints `ready ISSUER` on stdout once it listens; exits on
// SIGTERM. It talks to nobody: no outside hosts, no DNS.
//
// Version: oidc-provider 8.8.1, pinned exactly in package.json. The image has
// Node.js 20; the 9.x line targets Node 22 and warns "Unsupported runtime" on
// 20, while 8.8.1 supports Node 20 and runs without a warning. The flows the
// tests use (code + PKCE, ID token claims, refresh tokens) are the same.
//
// Config (JSON):
//   issuer                 "http://192.0.2.10:9000" (no trailing slash)
//   listen                 { "host": "192.0.2.10", "port": 9000 }
//   clients                [{ client_id, client_secret, redirect_uris,
//                             token_endpoint_auth_method? (client_secret_basic) }]
//   users                  [{ login, email, name, groups: [...] }]
//   id_token_ttl_seconds   optional, default 3600
//   admin                  optional { "host": "127.0.0.1", "port": 0 }: the admin
//                          endpoint below; port 0 picks a free port
//
// Pages (what a browser, and the harness's `sign_in`, sees):
//   /interaction/UID       form#login with input[name=login], input[name=password]
//                          and button[type=submit]; any password is accepted for a
//                          configured login; an unknown login re-renders the form
//                          with p#error ("unknown login") and never reaches a code.
//
// Admin endpoint (only with `admin`; plain HTTP + JSON). The harness binds it
// to loopback in the provider's own namespace, so only code running in that
// namespace (the harness, through `in_netns`) reaches it, never the browser
// or the controller. Printed as `admin http://HOST:PORT` before `ready`.
//   POST /id-token-rewrites  {"set": {CLAIM: VALUE, ...}}
//                          arms a one-shot rewrite: the next successful
//                          authorization_code grant answers with its ID token's
//                          claims in `set` replaced and the token signed again
//                          with the provider's own key (RS256, same kid, same
//                          header), so only those claims are wrong. An empty
//                          `set` only signs again. 204; 409 if one is armed.
//   DELETE /users/LOGIN    removes a user while the provider runs: findAccount
//                          no longer finds it (refresh grants fail with
//                          invalid_grant) and the login page refuses it. 204; 404.
//   GET /log               {"token_grants": [{grant_type, status, error}],
//                           "id_token_rewrites": [{set, claims}],
//                           "authorization_redirects": [URL]} in order: every
//                          answer of the token endpoint, every rewritten ID
//                          token's final claims, and every authorization response
//                          sent to a client's redirect URI (the code's URL, as
//                          the browser followed it).

import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

if (process.argv.length !== 3) {
  fail('usage: node provider.mjs CONFIG.json');
}

let config;
try {
  config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (e) {
  fail(`reading ${process.argv[2]}: ${e.message}`);
}
for (const key of ['issuer', 'listen', 'clients', 'users']) {
  if (!(key in config)) fail(`config lacks "${key}"`);
}

const users = new Map(config.users.map((u) => [u.login, u]));
const redirectUris = new Set(config.clients.flatMap((c) => c.redirect_uris));

// A fresh signing key per run: the library's built-in development key is
// the same everywhere, and a test must not accept tokens from another run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'lab' };

// What the admin endpoint arms and records (see the header).
let armedRewrite = null;
const log = { token_grants: [], id_token_rewrites: [], authorization_redirects: [] };

const base64url = (buf) => Buffer.from(buf).toString('base64url');

// The ID token `jwt` with `rewrite` applied, signed again with our key. The
// header is kept as the library wrote it (alg RS256, kid), and RS256 is
// RSASSA-PKCS1-v1_5 with SHA-256, node:crypto's default for an RSA key.
function rewriteIdToken(jwt, rewrite) {
  const [header, payload] = jwt.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  Object.assign(claims, rewrite.set);
  const input = `${header}.${base64url(JSON.stringify(claims))}`;
  return { jwt: `${input}.${base64url(sign('sha256', Buffer.from(input), privateKey))}`, claims };
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`;
}

function loginPage(uid, client, error, login) {
  const err = error ? `<p id="error">${escapeHtml(error)}</p>\n` : '';
  return page('Sign in', `<p>to <span id="client">${escapeHtml(client)}</span></p>
${err}<form id="login" autocomplete="off" action="/interaction/${escapeHtml(uid)}/login" method="post">
  <input required type="text" name="login" placeholder="login" value="${escapeHtml(login ?? '')}" autofocus>
  <input required type="password" name="password" placeholder="password">
  <button type="submit">Sign in</button>
</form>`);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req) {
  return new URLSearchParams(await readBody(req));
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  })),
  jwks: { keys: [signingKey] },
  cookies: {
    keys: [randomBytes(32).toString('hex')],
    // The lab serves plain HTTP: a SameSite=None cookie without Secure is
    // dropped by Chromium, so keep every cookie Lax.
    long: { httpOnly: true, sameSite: 'lax', signed: true },
    short: { httpOnly: true, sameSite: 'lax', signed: true },
  },
  pkce: { methods: ['S256'], required: () => true },
  // By default the ID token carries only what the `claims` parameter asks
  // for and the rest goes to userinfo; Warren reads email and groups from
  // the ID token, as most providers send them.
  conformIdTokenClaims: false,
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  async findAccount(ctx, id) {
    const user = users.get(id);
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: user.email,
          email_verified: true,
          name: user.name,
          groups: user.groups ?? [],
        };
      },
    };
  },
  // Refresh tokens whenever the client was granted offline_access.
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access'),
  ttl: {
    IdToken: config.id_token_ttl_seconds ?? 3600,
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<p id="error">${escapeHtml(out.error)}: ${escapeHtml(out.error_description ?? '')}</p>`);
  },
});

// OpenID Connect drops offline_access unless the request says prompt=consent.
// Consent is automatic here, so a request for offline_access without a
// prompt gets one: the client gets its refresh token without having to know.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth' && ctx.query.prompt === undefined) {
    const scope = String(ctx.query.scope ?? '').split(' ');
    if (scope.includes('offline_access')) {
      ctx.query = { ...ctx.query, prompt: 'consent' };
    }
  }
  await next();
});

// The token endpoint, watched: every answer is logged, and an armed rewrite
// changes the ID token of the next successful authorization_code grant.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token') {
    await next();
    return;
  }
  try {
    await next();
  } finally {
    const grantType = ctx.oidc?.params?.grant_type ?? null;
    const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
    if (armedRewrite && ctx.status === 200 && grantType === 'authorization_code'
        && typeof body.id_token === 'string') {
      const { jwt, claims } = rewriteIdToken(body.id_token, armedRewrite);
      ctx.body = { ...body, id_token: jwt };
      log.id_token_rewrites.push({ set: armedRewrite.set, claims });
      armedRewrite = null;
    }
    log.token_grants.push({ grant_type: grantType, status: ctx.status, error: body.error ?? null });
  }
});

// Authorization responses to a client, logged with their code and state.
provider.use(async (ctx, next) => {
  await next();
  const location = ctx.response.get('location');
  if (location && redirectUris.has(location.split('?')[0])) {
    log.authorization_redirects.push(location);
  }
});

// The interaction pages: our own login form, and consent given at once.
provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(ctx.path);
  if (!match) {
    await next();
    return;
  }
  ctx.set('cache-control', 'no-store');
  const [, uid, login] = match;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
  const { prompt, params, session } = details;

  if (prompt.name === 'login' && ctx.method === 'GET' && !login) {
    ctx.type = 'html';
    ctx.body = loginPage(uid, params.client_id);
    return;
  }
  if (prompt.name === 'login' && ctx.method === 'POST' && login) {
    const form = await readForm(ctx.req);
    const who = form.get('login') ?? '';
    if (!users.has(who)) {
      ctx.status = 403;
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, `unknown login: ${who}`, who);
      return;
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId: who },
    }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  if (prompt.name === 'consent' && ctx.method === 'GET' && !login) {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    if (prompt.details.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    const to = await provider.interactionResult(ctx.req, ctx.res, {
      consent: { grantId },
    }, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  ctx.throw(400, `unexpected ${ctx.method} for prompt ${prompt.name}`);
});

function answer(res, status, value) {
  const body = value === undefined ? '' : JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

async function handleAdmin(req, res) {
  const url = new URL(req.url, 'http://admin');
  const user = /^\/users\/([^/]+)$/.exec(url.pathname);
  if (req.method === 'POST' && url.pathname === '/id-token-rewrites') {
    const rewrite = JSON.parse((await readBody(req)) || '{}');
    if (armedRewrite) {
      answer(res, 409, { error: 'a rewrite is already armed' });
      return;
    }
    if (typeof rewrite.set !== 'object' || rewrite.set === null || Array.isArray(rewrite.set)) {
      answer(res, 400, { error: 'expected {"set": {CLAIM: VALUE, ...}}' });
      return;
    }
    armedRewrite = { set: rewrite.set };
    answer(res, 204);
  } else if (req.method === 'DELETE' && user) {
    answer(res, users.delete(decodeURIComponent(user[1])) ? 204 : 404);
  } else if (req.method === 'GET' && url.pathname === '/log') {
    answer(res, 200, log);
  } else {
    answer(res, 404, { error: `no ${req.method} ${url.pathname}` });
  }
}

const admin = config.admin ? createServer((req, res) => {
  handleAdmin(req, res).catch((e) => answer(res, 400, { error: e.message }));
}) : null;

const server = createServer(provider.callback());
server.on('error', (e) => fail(`listening on ${config.listen.host}:${config.listen.port}: ${e.message}`));
const listening = [new Promise((resolve) => { server.listen(config.listen.port, config.listen.host, resolve); })];
if (admin) {
  admin.on('error', (e) => fail(`admin listening on ${config.admin.host}:${config.admin.port}: ${e.message}`));
  listening.push(new Promise((resolve) => { admin.listen(config.admin.port, config.admin.host, resolve); }));
}
Promise.all(listening).then(() => {
  if (admin) {
    const { address, port } = admin.address();
    process.stdout.write(`admin http://${address}:${port}\n`);
  }
  process.stdout.write(`ready ${config.issuer}\n`);
});

function shutdown() {
  admin?.close();
  admin?.closeAllConnections();
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
