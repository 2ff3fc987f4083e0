// TLS facts: the versions and suites this runtime offers, and the PEM checks the config runs.
import assert from "node:assert/strict";
import {
  effectiveMinVersion,
  keyKindOf,
  loadPemSupport,
  offerableSuites,
  parseCertificates,
  parsePrivateKey,
  readSystemBundle,
  runtimeSuites,
  SYSTEM_CA_BUNDLES,
  TLS_VERSIONS,
} from "../src/net/tls.ts";
import { fixture } from "./support/glue.ts";

const pem = (name: string) => Deno.readTextFileSync(fixture(name));

Deno.test("tls: every version below TLSv1.2 runs as TLSv1.2 (the runtime offers 1.2 and 1.3 only)", () => {
  assert.deepEqual(
    TLS_VERSIONS.map(effectiveMinVersion),
    ["TLSv1.2", "TLSv1.2", "TLSv1.2", "TLSv1.2", "TLSv1.3"],
  );
});

Deno.test("tls: the suites offered depend on the key, and Go's names map onto them", () => {
  const rsa = runtimeSuites("rsa"), ec = runtimeSuites("ec");
  for (const suite of ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]) {
    assert.ok(rsa.includes(suite) && ec.includes(suite), suite);
  }
  assert.ok(rsa.some((s) => s.includes("_RSA_")) && !rsa.some((s) => s.includes("_ECDSA_")));
  assert.ok(ec.some((s) => s.includes("_ECDSA_")) && !ec.some((s) => s.includes("_RSA_")));
  assert.deepEqual(
    offerableSuites(["TLS_AES_128_GCM_SHA256", "TLS_RSA_WITH_RC4_128_SHA"], "rsa"),
    ["TLS_AES_128_GCM_SHA256"],
  );
});

Deno.test("tls: certificates and keys are parsed, and a key's kind read from its certificate", async () => {
  await loadPemSupport();
  const server = parseCertificates(pem("server.pem"));
  assert.equal(keyKindOf(server.leaf), "rsa");
  assert.ok(server.leaf.checkPrivateKey(parsePrivateKey(pem("server.key"))));
  assert.equal(keyKindOf(parseCertificates(pem("ec.pem")).leaf), "ec");
  assert.throws(() => parseCertificates(pem("server.key")), /no PEM certificate found/);
  assert.throws(() => parsePrivateKey(pem("server.pem")), /no PEM private key found/);
  assert.throws(
    () => parsePrivateKey("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n"),
    /invalid PEM private key/,
  );
});

Deno.test("tls: the system bundle is read where Go reads it", async () => {
  const bundle = await readSystemBundle();
  assert.ok(bundle, "this machine has ca-certificates");
  assert.ok(SYSTEM_CA_BUNDLES.includes(bundle.cafile));
  assert.match(bundle.pem, /BEGIN CERTIFICATE/);
});
