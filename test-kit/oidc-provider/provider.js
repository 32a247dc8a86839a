// The OpenID provider the browser suite signs the demo in against:
// oidc-provider (an OpenID Certified implementation that nobody on this
// project wrote), with its development login and consent pages (any login,
// any password). Started by test-kit's OidcProvider (test-kit/src/
// oidc_provider.rs) on a free loopback port, with:
//   PORT           the port; the issuer is http://localhost:PORT (another
//                  site than the app's 127.0.0.1)
//   CLIENT_ID      the demo's client id
//   CLIENT_SECRET  its secret (client_secret_basic)
//   REDIRECT_URI   the demo's callback, the client's one redirect URI
// and, for the provider crate's tests (oidc/tests/), optionally:
//   KEY_ID         sign with a fresh RSA key of this kid (instead of
//                  oidc-provider's development keys): started again on the
//                  same port with another KEY_ID, the provider has rotated
//                  its signing key
//   POST_LOGOUT_REDIRECT_URI  registered for RP-initiated logout
// Prints "listening" when it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const {
  PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, KEY_ID, POST_LOGOUT_REDIRECT_URI,
} = process.env;
const issuer = `http://localhost:${PORT}`;

function signingKeys() {
  if (!KEY_ID) return undefined;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: KEY_ID, use: 'sig' }] };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(POST_LOGOUT_REDIRECT_URI
        ? { post_logout_redirect_uris: [POST_LOGOUT_REDIRECT_URI] }
        : {}),
    },
  ],
  ...(KEY_ID ? { jwks: signingKeys() } : {}),
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          name: `${id} at oidc-provider`,
          preferred_username: id,
          email: `${id}@example.org`,
        };
      },
    };
  },
  // Signs the provider's own cookies; a test fixture, not a secret.
  cookies: { keys: ['browser-suite-fixture'] },
  features: { devInteractions: { enabled: true } },
});

provider.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`listening at ${issuer}`);
});
