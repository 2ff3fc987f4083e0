/**
 * TLS facts: accepted versions and Go cipher-suite names, what this runtime offers, PEM checks.
 * @module
 */
import type { KeyObject, X509Certificate } from "node:crypto";

/** node:crypto, loaded only when a PEM file is configured: Node compatibility costs ~10 MiB RSS. */
let crypto: typeof import("node:crypto") | undefined;

/** Loads what {@linkcode parseCertificates} and {@linkcode parsePrivateKey} need; call it first. */
export async function loadPemSupport(): Promise<void> {
  crypto ??= await import("node:crypto");
}

function nodeCrypto(): typeof import("node:crypto") {
  if (!crypto) throw new Error("loadPemSupport() was not awaited");
  return crypto;
}

/** The original's `tls-min-version` values. */
export const TLS_VERSIONS = ["SSLv3.0", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"] as const;
/** One of {@linkcode TLS_VERSIONS}. */
export type TlsVersionName = typeof TLS_VERSIONS[number];

/** The minimum the listener enforces: the runtime never offers TLS 1.0/1.1 (nor SSLv3). */
export function effectiveMinVersion(name: TlsVersionName): "TLSv1.2" | "TLSv1.3" {
  return name === "TLSv1.3" ? "TLSv1.3" : "TLSv1.2";
}

/** The suites this runtime (rustls) offers, by Go name, with the key type each needs. */
const RUNTIME_SUITES: Record<string, "any" | "rsa" | "ec"> = {
  TLS_AES_128_GCM_SHA256: "any",
  TLS_AES_256_GCM_SHA384: "any",
  TLS_CHACHA20_POLY1305_SHA256: "any",
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: "ec",
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: "ec",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: "ec",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: "rsa",
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: "rsa",
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: "rsa",
};

/** Every cipher-suite name Go's crypto/tls knows (CipherSuites and InsecureCipherSuites, plus legacy aliases). */
export const GO_CIPHER_SUITES: ReadonlySet<string> = new Set([
  ...Object.keys(RUNTIME_SUITES),
  "TLS_RSA_WITH_RC4_128_SHA",
  "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
  "TLS_RSA_WITH_AES_128_CBC_SHA",
  "TLS_RSA_WITH_AES_256_CBC_SHA",
  "TLS_RSA_WITH_AES_128_CBC_SHA256",
  "TLS_RSA_WITH_AES_128_GCM_SHA256",
  "TLS_RSA_WITH_AES_256_GCM_SHA384",
  "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
  "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
  "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
  "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
  "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
  "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
  "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
  "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
  "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
  "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
  "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
]);

const LEGACY_ALIASES: Record<string, string> = {
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
};

/** Key algorithm of a certificate, as far as suite selection cares. */
export type KeyKind = "rsa" | "ec" | "other";

/** The suites the runtime will offer for a certificate whose key is `keyKind`. */
export function runtimeSuites(keyKind: KeyKind): string[] {
  return Object.entries(RUNTIME_SUITES)
    .filter(([, kind]) => kind === "any" || kind === keyKind)
    .map(([name]) => name);
}

/** Of the configured suite names, those the runtime can offer with a `keyKind` key. */
export function offerableSuites(names: readonly string[], keyKind: KeyKind): string[] {
  const runtime = new Set(runtimeSuites(keyKind));
  return names.map((n) => LEGACY_ALIASES[n] ?? n).filter((n) => runtime.has(n));
}

/** A parsed certificate chain (every certificate in it checked): its leaf. */
export interface CertificateInfo {
  leaf: X509Certificate;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parses every certificate in a PEM text; throws a readable message when there is none or one is bad. */
export function parseCertificates(pem: string): CertificateInfo {
  const blocks = pem.match(PEM_CERT);
  if (!blocks) throw new Error("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)");
  const certs = blocks.map((block) => {
    try {
      return new (nodeCrypto().X509Certificate)(block);
    } catch (e) {
      throw new Error(`invalid PEM certificate: ${(e as Error).message}`);
    }
  });
  return { leaf: certs[0] };
}

/** Parses a PEM private key; throws a readable message when it is missing or bad. */
export function parsePrivateKey(pem: string): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new Error("no PEM private key found (expected -----BEGIN ... PRIVATE KEY-----)");
  }
  try {
    return nodeCrypto().createPrivateKey(pem);
  } catch (e) {
    throw new Error(`invalid PEM private key: ${(e as Error).message}`);
  }
}

/** The key kind of a certificate's public key. */
export function keyKindOf(cert: X509Certificate): KeyKind {
  const type = cert.publicKey.asymmetricKeyType;
  return type === "rsa" || type === "rsa-pss" ? "rsa" : type === "ec" ? "ec" : "other";
}

/** Where Go's crypto/x509 looks for the system's CA bundle on Linux, BSD and macOS. */
export const SYSTEM_CA_BUNDLES: readonly string[] = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/tls/cacert.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

/** The system's CA bundle, read where Go reads it (the runtime's own lookup needs --allow-sys). */
export async function readSystemBundle(): Promise<{ cafile: string; pem: string } | undefined> {
  for (const cafile of SYSTEM_CA_BUNDLES) {
    try {
      return { cafile, pem: await Deno.readTextFile(cafile) };
    } catch { /* not on this system */ }
  }
  return undefined;
}
