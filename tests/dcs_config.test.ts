// The dcs: section: Patroni's own file as the source (positions in it), explicit keys winning,
// refusals that say what to do, and reloads that never print a password.
import assert from "node:assert/strict";
import { type Config, describeChanges, parseConfig } from "../src/config/config.ts";
import { dcsSettings, normalizeNamespace } from "../src/config/dcs_config.ts";
import { parsePatroniConfig } from "../src/config/patroni_config.ts";
import { SYSTEM_CA_BUNDLES } from "../src/net/tls.ts";
import { configProblems, fixture } from "./support/glue.ts";

/** Writes `text` to a temp file; returns its path. */
async function temp(text: string, suffix = ".yml"): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "patroniglue-dcs-", suffix });
  await Deno.writeTextFile(file, text);
  return file;
}

const problems = configProblems;

const PATRONI = `scope: pgglue
namespace: /service/
name: node1
restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
etcd3:
  hosts:
  - 127.0.0.1:2379
  - 10.0.0.2:2379
  username: patroni
  password: s3cret
bootstrap:
  dcs:
    ttl: 30
postgresql:
  data_dir: /var/lib/postgresql/15/main
tags:
  nofailover: false
`;

Deno.test("dcs: one line, dcs.patroni-config, gives scope, namespace, name, endpoints and auth from Patroni's file", async () => {
  const file = await temp(PATRONI);
  const config = await parseConfig(`dcs:\n  patroni-config: ${file}\n`, "c.yml");
  assert.deepEqual(config.dcs, {
    type: "etcd3",
    endpoints: ["http://127.0.0.1:2379", "http://10.0.0.2:2379"],
    namespace: "/service",
    scope: "pgglue",
    name: "node1",
    username: "patroni",
    password: "s3cret",
    ca: undefined,
    client: undefined,
    margin: undefined,
    patroniConfig: file,
  });
  assert.deepEqual(config.warnings, []);
  await Deno.remove(file);
});

Deno.test("dcs: no dcs section, no witness", async () => {
  assert.equal((await parseConfig("", "c.yml")).dcs, undefined);
  assert.equal((await parseConfig("dcs:\n", "c.yml")).dcs, undefined);
});

Deno.test("dcs: Patroni's host, hosts (list or commas), url and urls, with protocol; IPv6 in brackets", () => {
  const endpoints = (section: string) => {
    const r = parsePatroniConfig(`scope: s\nname: m1\netcd:\n${section}`, "p.yml");
    assert.deepEqual(r.problems, []);
    return r.facts!.endpoints!.value;
  };
  assert.deepEqual(endpoints("  host: 10.0.0.1:2379\n"), [{ host: "10.0.0.1", port: 2379 }]);
  assert.deepEqual(endpoints("  hosts: a:1,b:2 , c\n"), [
    { host: "a", port: 1 },
    { host: "b", port: 2 },
    { host: "c", port: 2379 },
  ]);
  assert.deepEqual(endpoints("  url: https://[::1]:2379/\n"), [
    { scheme: "https", host: "::1", port: 2379 },
  ]);
  assert.deepEqual(endpoints("  urls: [http://a:1, https://b:2]\n"), [
    { scheme: "http", host: "a", port: 1 },
    { scheme: "https", host: "b", port: 2 },
  ]);
});

Deno.test("dcs: explicit keys win over Patroni's file; protocol applies to hosts without a scheme", async () => {
  const file = await temp(PATRONI);
  const config = await parseConfig(
    `dcs:
  patroni-config: ${file}
  type: etcd
  hosts: "h1:2379,https://h2:2380"
  protocol: https
  scope: other
  namespace: service
  name: node9
  username: reader
  password: ""
  margin: 2
`,
    "c.yml",
  );
  const dcs = config.dcs!;
  assert.equal(dcs.type, "etcd");
  assert.deepEqual(dcs.endpoints, ["https://h1:2379", "https://h2:2380"]);
  assert.deepEqual([dcs.scope, dcs.namespace, dcs.name], ["other", "/service", "node9"]);
  assert.deepEqual([dcs.username, dcs.password, dcs.margin], ["reader", "", 2]);
  await Deno.remove(file);
});

Deno.test("dcs: explicit keys alone, without Patroni's file (the way around a file only Patroni can read)", async () => {
  const config = await parseConfig(
    "dcs:\n  type: etcd3\n  hosts: [127.0.0.1:2379]\n  scope: pgglue\n  name: node1\n",
    "c.yml",
  );
  assert.equal(config.dcs!.namespace, "/service");
  assert.equal(config.dcs!.patroniConfig, undefined);
  assert.deepEqual(dcsSettings(config.dcs!), {
    type: "etcd3",
    endpoints: ["http://127.0.0.1:2379"],
    namespace: "/service",
    scope: "pgglue",
    username: undefined,
    password: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
  });
});

Deno.test("dcs: an unreadable Patroni file is refused with the way around it", async () => {
  const file = await temp(PATRONI);
  await Deno.chmod(file, 0o000);
  const readable = Deno.uid() === 0; // root reads it anyway: test the message on a missing file too
  const [p] = await problems(`dcs:\n  patroni-config: ${readable ? file + ".gone" : file}\n`);
  assert.match(p, /cannot read Patroni's configuration file/);
  assert.match(
    p,
    /set dcs\.type, dcs\.hosts, dcs\.scope and dcs\.name instead of dcs\.patroni-config/,
  );
  assert.match(p, /\(dcs\.patroni-config\)$/);
  await Deno.remove(file);
});

Deno.test("dcs: problems in Patroni's file are reported at its own file:line:col", async () => {
  const file = await temp(`scope: pgglue
name: node1
etcd:
  hosts: "127.0.0.1:70000"
  protocol: gopher
  srv: example.org
`);
  const ps = await problems(`dcs:\n  patroni-config: ${file}\n`);
  assert.deepEqual(ps.map((p) => p.replace(file, "P")), [
    `P:4:10: etcd.hosts: port must be from 1 to 65535: got "127.0.0.1:70000" (dcs.patroni-config)`,
    'P:5:13: etcd.protocol: must be one of http, https: got "gopher" (dcs.patroni-config)',
    "P:6:8: etcd.srv: DNS SRV discovery is not supported; set dcs.hosts (dcs.patroni-config)",
  ]);
  const broken = await temp("scope: [\n");
  const [syntax] = await problems(`dcs:\n  patroni-config: ${broken}\n`);
  assert.match(syntax, new RegExp(`^${broken}:\\d+:\\d+: YAML syntax: `));
  await Deno.remove(file);
  await Deno.remove(broken);
});

Deno.test("dcs: Patroni's other DCS kinds are refused by name, saying which are supported", async () => {
  for (const kind of ["consul", "zookeeper", "kubernetes", "exhibitor", "raft"]) {
    const file = await temp(`scope: s\nname: m1\n${kind}:\n  hosts: x\n`);
    const [p] = await problems(`dcs:\n  patroni-config: ${file}\n`);
    assert.equal(
      p,
      `${file}:3:1: ${kind}: this DCS is not supported by patroniglue's DCS witness (supported: etcd, etcd3) (dcs.patroni-config)`,
    );
    await Deno.remove(file);
    const [own] = await problems(`dcs:\n  type: ${kind}\n  hosts: x\n  scope: s\n  name: m1\n`);
    assert.equal(
      own,
      `c.yml:2:9: dcs.type: ${kind} is not supported by the DCS witness (supported: etcd, etcd3)`,
    );
  }
  const both = await temp("scope: s\nname: m1\netcd:\n  host: a\netcd3:\n  host: b\n");
  assert.match(
    (await problems(`dcs:\n  patroni-config: ${both}\n`))[0],
    /:5:1: both etcd and etcd3/,
  );
  const none = await temp("scope: s\nname: m1\n");
  assert.match(
    (await problems(`dcs:\n  patroni-config: ${none}\n`))[0],
    /no etcd or etcd3 section/,
  );
  await Deno.remove(both);
  await Deno.remove(none);
});

Deno.test("dcs: what is missing is named, with the key that gives it", async () => {
  const file = await temp("etcd:\n  host: 127.0.0.1:2379\n");
  const ps = await problems(`dcs:\n  patroni-config: ${file}\n`);
  assert.deepEqual(ps, [
    `c.yml:2:19: dcs: needs the cluster's name (Patroni's scope): set dcs.scope (${file} has no scope)`,
    `c.yml:2:19: dcs: needs this member's name: set dcs.name (${file} has no name)`,
  ]);
  assert.deepEqual(await problems("dcs:\n  margin: 3\n"), [
    "c.yml:2:11: dcs: needs the DCS type: set dcs.type or dcs.patroni-config",
    "c.yml:2:11: dcs: needs the etcd endpoints: set dcs.hosts or dcs.patroni-config",
    "c.yml:2:11: dcs: needs the cluster's name (Patroni's scope): set dcs.scope or dcs.patroni-config",
    "c.yml:2:11: dcs: needs this member's name: set dcs.name or dcs.patroni-config",
  ]);
  await Deno.remove(file);
});

Deno.test("dcs: keys are checked like every other key", async () => {
  const ps = await problems(
    "dcs:\n  type: etcd\n  hosts: []\n  scope: s\n  name: m1\n  margin: 0\n  protocol: ftp\n  nmae: x\n",
  );
  assert.deepEqual(ps, [
    "c.yml:3:10: dcs.hosts: must be a list of host:port, or one string separated by commas: got []",
    "c.yml:6:11: dcs.margin: must be more than 0 seconds: got 0",
    'c.yml:7:13: dcs.protocol: must be one of http, https: got "ftp"',
    "c.yml:8:3: unknown key 'dcs.nmae' (did you mean 'name'?)",
  ]);
  assert.match(
    (await problems("dcs:\n  type: etcd\n  hosts: a\n  scope: s\n  name: m1\n  password: p\n"))[0],
    /a password without a username/,
  );
});

Deno.test("dcs: TLS files are read and checked where they are named; Patroni's key may sit in the cert file", async () => {
  const file = await temp(`scope: s
name: m1
etcd3:
  protocol: https
  host: 127.0.0.1:2379
  cacert: ${fixture("ca.pem")}
  cert: ${fixture("client.pem")}
  key: ${fixture("client.key")}
`);
  const config = await parseConfig(`dcs:\n  patroni-config: ${file}\n`, "c.yml");
  assert.equal(config.dcs!.ca!.cafile, fixture("ca.pem"));
  assert.match(config.dcs!.client!.cert, /BEGIN CERTIFICATE/);
  assert.match(config.dcs!.client!.key, /PRIVATE KEY/);
  assert.deepEqual(config.dcs!.endpoints, ["https://127.0.0.1:2379"]);
  // one file with both
  const both = await temp(
    Deno.readTextFileSync(fixture("client.pem")) + Deno.readTextFileSync(fixture("client.key")),
    ".pem",
  );
  const combined = await parseConfig(
    `dcs:\n  type: etcd3\n  hosts: https://a:1\n  scope: s\n  name: m1\n  cert: ${both}\n`,
    "c.yml",
  );
  assert.equal(combined.dcs!.client!.keyfile, both);
  // wrong contents, named at their place in Patroni's file
  const bad = await temp(
    `scope: s\nname: m1\netcd:\n  host: a\n  cacert: ${fixture("client.key")}\n  cert: ${
      fixture("ca.pem")
    }\n`,
  );
  const ps = await problems(`dcs:\n  patroni-config: ${bad}\n`);
  assert.equal(ps.length, 2);
  assert.match(
    ps[0],
    new RegExp(`^${bad}:5:11: cacert: cannot use .* as a certificate: no PEM certificate`),
  );
  assert.match(
    ps[1],
    new RegExp(`^${bad}:6:9: cert: cannot use .* as a private key: no PEM private key`),
  );
  // TLS files with plain http endpoints: a warning
  const plain = await parseConfig(
    `dcs:\n  type: etcd3\n  hosts: a:1\n  scope: s\n  name: m1\n  cacert: ${fixture("ca.pem")}\n`,
    "c.yml",
  );
  assert.match(plain.warnings[0], /no effect on http:\/\/ endpoints/);
  for (const f of [file, both, bad]) await Deno.remove(f);
});

Deno.test("dcs: namespaces as Patroni builds its paths", () => {
  assert.equal(normalizeNamespace("/service/"), "/service");
  assert.equal(normalizeNamespace("service"), "/service");
  assert.equal(normalizeNamespace("//a//b/"), "/a/b");
  assert.equal(normalizeNamespace("/"), "");
});

Deno.test("dcs: a reload says what changed, never a password", async () => {
  const at = async (extra: string): Promise<Config> =>
    await parseConfig(
      `dcs:\n  type: etcd3\n  hosts: a:1\n  scope: s\n  name: m1\n  username: u\n${extra}`,
      "c.yml",
    );
  const changes = describeChanges(
    await at("  password: old-secret\n"),
    await at("  password: new-secret\n  margin: 2\n"),
  );
  assert.deepEqual(changes, ["dcs.margin: unset -> 2", "dcs.password: changed"]);
  assert.ok(!changes.join().includes("secret"));
});

Deno.test("dcs: config.yml.example's commented dcs keys, uncommented, load as documented", async () => {
  const example = await Deno.readTextFile(new URL("../config.yml.example", import.meta.url));
  const block = example.match(/^dcs:\n[\s\S]*?\n\n/m)![0];
  const explicit = block.replace(/^ {2}# ((?!patroni-config)[\w-]+: .*?)(\s+#.*)?$/gm, "  $1");
  const config = await parseConfig(explicit.replace(/^ {2}(cacert|cert|key): .*\n/gm, ""), "x.yml");
  assert.deepEqual(config.dcs, {
    type: "etcd3",
    endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"],
    namespace: "/service",
    scope: "main",
    name: "node1",
    username: "patroniglue",
    password: "secret",
    ca: undefined,
    client: undefined,
    margin: 15,
    patroniConfig: undefined,
  });
  assert.match(block, /^ {2}# patroni-config: \/etc\/patroni\/patroni\.yml$/m);
});

Deno.test("dcs: https endpoints without cacert trust the system bundle, read where Go reads it", async () => {
  const config = await parseConfig(
    "dcs:\n  type: etcd3\n  hosts: https://etcd:2379\n  scope: s\n  name: m1\n",
    "c.yml",
  );
  assert.ok(SYSTEM_CA_BUNDLES.includes(config.dcs!.ca!.cafile), config.dcs!.ca!.cafile);
  assert.match(config.dcs!.ca!.pem, /BEGIN CERTIFICATE/);
});

Deno.test("dcs: credentials in an etcd URL are taken as Patroni takes them, and never shown in a message", async () => {
  const file = await temp(
    "scope: s\nname: m1\netcd3:\n  url: https://patroni:S3cret%40@10.0.0.1:2379\n",
  );
  const config = await parseConfig(`dcs:\n  patroni-config: ${file}\n`, "c.yml");
  assert.deepEqual(
    [config.dcs!.username, config.dcs!.password, config.dcs!.endpoints],
    ["patroni", "S3cret@", ["https://10.0.0.1:2379"]],
  );
  const bad = await temp(
    "scope: s\nname: m1\netcd3:\n  url: https://patroni:S3cretPass@10.0.0.1:99999\n  password: 12345\n",
  );
  const ps = await problems(`dcs:\n  patroni-config: ${bad}\n`);
  assert.equal(ps.length, 2);
  for (const p of ps) assert.doesNotMatch(p, /S3cret|12345/, p);
  assert.match(ps[0], /got "https:\/\/\*\*\*@10\.0\.0\.1:99999"/);
  assert.match(ps[1], /password: must be a string \(a number or boolean must be quoted\)/);
  await Deno.remove(file);
  await Deno.remove(bad);
});
