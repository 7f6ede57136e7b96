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
//
// Pages (what a browser, and the harness's `sign_in`, sees):
//   /interaction/UID       form#login with input[name=login], input[name=password]
//                          and button[type=submit]; any password is accepted for a
//                          configured login; an unknown login re-renders the form
//                          with p#error ("unknown login") and never reaches a code.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
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

// A fresh signing key per run: the library's built-in development key is
// the same everywhere, and a test must not accept tokens from another run.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: 'lab' };

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

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
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

const server = createServer(provider.callback());
server.on('error', (e) => fail(`listening on ${config.listen.host}:${config.listen.port}: ${e.message}`));
server.listen(config.listen.port, config.listen.host, () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
