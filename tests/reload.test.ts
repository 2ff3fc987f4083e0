// Reload from the schema: every key of the file, changed on SIGHUP in a running main.ts, takes
// effect as its declaration says; and every part of a Config is declared by some key.
import assert from "node:assert/strict";
import https from "node:https";
import { keyOf, parseConfig, schemaKeys } from "../src/config/config.ts";
import { agentCheck } from "./support/agent_client.ts";
import { Etcd, HAS_ETCD } from "./support/etcd.ts";
import { FakePatroni } from "./support/fake_patroni.ts";
import { fixture, freePort, freePorts, GlueProcess, sleep, tlsHandshake } from "./support/glue.ts";
import { HAS_OPENSSL } from "./support/tools.ts";

Deno.test("reload: every key declares what a change to it takes, and every part of a Config has its key", async () => {
  for (const [path, reload] of schemaKeys()) assert.ok(reload, `${path} declares no reload`);
  const full = await parseConfig(
    `frontend:\n  certfile: ${fixture("server.pem")}\n  keyfile: ${fixture("server.key")}\n` +
      `backend:\n  scheme: https\n  cafile: ${fixture("ca.pem")}\n  certfile: ${
        fixture("client.pem")
      }\n  keyfile: ${fixture("client.key")}\n` +
      `metrics:\n  port: 9999\nagent:\n  port: 9998\n` +
      `dcs:\n  type: etcd\n  hosts: https://a:1\n  scope: s\n  name: m1\n  username: u\n  password: p\n` +
      `  cacert: ${fixture("ca.pem")}\n  cert: ${fixture("client.pem")}\n  key: ${
        fixture("client.key")
      }\n  margin: 3\n`,
    "full.yml",
  );
  const paths: string[] = [];
  const walk = (prefix: string, v: unknown): void => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    } else if (v !== undefined) paths.push(prefix);
  };
  for (const [k, v] of Object.entries(full)) if (k !== "file" && k !== "warnings") walk(k, v);
  for (const path of paths) assert.ok(keyOf(path).reload, path);
  assert.throws(() => keyOf("frontend.nonsense"), /no key of the schema gives frontend.nonsense/);
});

/** The config as a nested object, written out as YAML (scalars, lists of scalars, one level of sections). */
type Tree = Record<string, unknown>;

function yaml(tree: Tree): string {
  const scalar = (v: unknown) => typeof v === "string" ? JSON.stringify(v) : String(v);
  return Object.entries(tree).map(([name, v]) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? `${name}:\n${
        Object.entries(v).map(([k, x]) =>
          `  ${k}: ${Array.isArray(x) ? `[${x.map(scalar).join(", ")}]` : scalar(x)}`
        ).join("\n")
      }`
      : `${name}: ${scalar(v)}`
  ).join("\n") + "\n";
}

/** What the cases need: the running process, its peers and how to observe them. */
interface World {
  glue: GlueProcess;
  ports: Record<"frontend" | "frontend2" | "agent" | "agent2" | "metrics", number>;
  patroni: FakePatroni;
  /** A replica on another port of 127.0.0.1, and one on 127.0.0.2 at the primary's port. */
  replica: FakePatroni;
  replicaElsewhere: FakePatroni;
  /** Patroni over HTTPS with the CA-signed certificate; and one that asks for a client certificate. */
  tlsPatroni: FakePatroni;
  clientCertPort: number;
  etcd: Etcd;
  tlsEtcd: Etcd;
  /** Lines written since the last reload. */
  lines(): string[];
}

/** One key (or a pair that only works together), how to change it, and how to see it took effect. */
interface Case {
  keys: string[];
  change(base: Tree, w: World): Tree;
  check(w: World): Promise<void>;
}

const get = async (url: string, init?: RequestInit & { client?: Deno.HttpClient }) => {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.text(), cache: res.headers.get("x-cache") };
};
const metric = async (w: World, name: string, port = w.ports.frontend) => {
  const text = (await get(`http://127.0.0.1:${port}/metrics`)).body;
  return Number(text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
};
const within = async (what: string, check: () => Promise<boolean>, ms = 5000) => {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(50);
  }
};
const set = (tree: Tree, section: string, values: Tree): Tree => ({
  ...tree,
  [section]: { ...(tree[section] as Tree), ...values },
});
const without = (tree: Tree, section: string, keys: string[]): Tree => ({
  ...tree,
  [section]: Object.fromEntries(
    Object.entries(tree[section] as Tree).filter(([k]) => !keys.includes(k)),
  ),
});
const dcsGauge = (w: World, name: string) => metric(w, `patroniglue_dcs_${name}`);

const CASES: Case[] = [
  {
    keys: ["frontend.host"],
    change: (b) => set(b, "frontend", { host: "127.0.0.2" }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.2:${w.ports.frontend}/health`)).status, 200);
      await assert.rejects(fetch(`http://127.0.0.1:${w.ports.frontend}/health`));
    },
  },
  {
    keys: ["frontend.port"],
    change: (b, w) => set(b, "frontend", { port: w.ports.frontend2 }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend2}/health`)).status, 200);
    },
  },
  {
    keys: ["frontend.certfile", "frontend.keyfile"],
    change: (b) =>
      set(b, "frontend", { certfile: fixture("server.pem"), keyfile: fixture("server.key") }),
    check: async (w) => {
      assert.equal(await tlsHandshake(w.ports.frontend, "TLSv1.3"), "TLSv1.3");
    },
  },
  {
    keys: ["frontend.tls-min-version"],
    change: (b) =>
      set(b, "frontend", {
        certfile: fixture("server.pem"),
        keyfile: fixture("server.key"),
        "tls-min-version": "TLSv1.3",
      }),
    check: async (w) => {
      assert.equal(await tlsHandshake(w.ports.frontend, "TLSv1.2"), "refused");
      assert.equal(await tlsHandshake(w.ports.frontend, "TLSv1.3"), "TLSv1.3");
    },
  },
  {
    keys: ["frontend.tls-ciphers"],
    change: (b) => set(b, "frontend", { "tls-ciphers": ["TLS_AES_128_GCM_SHA256"] }),
    check: async (w) => {
      // validated only: what the reload says of it is the warning that it cannot apply
      await w.glue.waitFor(/WARN frontend\.tls-ciphers has no effect without frontend\.certfile/);
    },
  },
  {
    keys: ["frontend.logformat"],
    change: (b) => set(b, "frontend", { logformat: "%m %U %s %C" }),
    check: async (w) => {
      await get(`http://127.0.0.1:${w.ports.frontend}/health`);
      await w.glue.waitFor(/INFO GET \/health 200 local$/);
    },
  },
  {
    keys: ["backend.host"],
    change: (b) => set(b, "backend", { host: "127.0.0.2" }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/primary`)).status, 503);
      assert.ok(w.replicaElsewhere.count("/primary") > 0);
    },
  },
  {
    keys: ["backend.port"],
    change: (b, w) => set(b, "backend", { port: w.replica.port }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/primary`)).status, 503);
      assert.ok(w.replica.count("/primary") > 0);
    },
  },
  {
    keys: ["backend.scheme", "backend.cafile"],
    change: (b, w) =>
      set(b, "backend", { scheme: "https", port: w.tlsPatroni.port, cafile: fixture("ca.pem") }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/leader`)).status, 200);
      assert.ok(w.tlsPatroni.count("/leader") > 0);
    },
  },
  {
    keys: ["backend.insecure"],
    change: (b, w) =>
      set(b, "backend", { scheme: "https", port: w.tlsPatroni.port, insecure: true }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/read-write`)).status, 200);
      assert.ok(w.tlsPatroni.count("/read-write") > 0);
    },
  },
  {
    keys: ["backend.certfile", "backend.keyfile"],
    change: (b, w) =>
      set(b, "backend", {
        scheme: "https",
        port: w.clientCertPort,
        cafile: fixture("ca.pem"),
        certfile: fixture("client.pem"),
        keyfile: fixture("client.key"),
      }),
    check: async (w) => {
      const res = await get(`http://127.0.0.1:${w.ports.frontend}/primary`);
      assert.equal(res.status, 200, res.body); // that server answers only a client certificate
    },
  },
  {
    keys: ["backend.timeout"],
    change: (b) => set(b, "backend", { timeout: 0.1 }),
    check: async (w) => {
      w.patroni.delayMs = 400;
      try {
        const res = await get(`http://127.0.0.1:${w.ports.frontend}/async`);
        assert.equal(res.status, 503);
        assert.match(res.body, /no answer within 0\.1s/);
      } finally {
        w.patroni.delayMs = 0;
      }
    },
  },
  {
    keys: ["cache.ttl"],
    change: (b) => set(b, "cache", { ttl: 0 }),
    check: async (w) => {
      const before = w.patroni.count("/sync");
      await get(`http://127.0.0.1:${w.ports.frontend}/sync`);
      await get(`http://127.0.0.1:${w.ports.frontend}/sync`);
      assert.equal(w.patroni.count("/sync") - before, 2);
    },
  },
  {
    keys: ["cache.interval"],
    change: (b) => set(b, "cache", { interval: 60 }),
    check: async (w) => {
      await get(`http://127.0.0.1:${w.ports.frontend}/synchronous`);
      await sleep(1500); // expired (ttl 1), not swept for a minute
      assert.ok(await metric(w, "patroniglue_cache_entries") >= 1);
    },
  },
  {
    keys: ["cache.max-entries"],
    change: (b) => set(b, "cache", { "max-entries": 1 }),
    check: async (w) => {
      for (const p of ["/primary", "/replica", "/leader"]) {
        await get(`http://127.0.0.1:${w.ports.frontend}${p}`);
      }
      assert.equal(await metric(w, "patroniglue_cache_entries"), 1);
    },
  },
  {
    keys: ["metrics.enabled"],
    change: (b) => set(b, "metrics", { enabled: false }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/metrics`)).status, 404);
    },
  },
  {
    keys: ["metrics.port"],
    change: (b, w) => set(b, "metrics", { port: w.ports.metrics }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.1:${w.ports.metrics}/metrics`)).status, 200);
      assert.equal((await get(`http://127.0.0.1:${w.ports.frontend}/metrics`)).status, 404);
    },
  },
  {
    keys: ["metrics.host"],
    change: (b, w) => set(b, "metrics", { host: "127.0.0.2", port: w.ports.metrics }),
    check: async (w) => {
      assert.equal((await get(`http://127.0.0.2:${w.ports.metrics}/metrics`)).status, 200);
    },
  },
  {
    keys: ["agent.host"],
    change: (b) => set(b, "agent", { host: "127.0.0.2" }),
    check: async (w) => {
      const reply = await agentCheck(w.ports.agent, "/primary\n", { hostname: "127.0.0.2" });
      assert.equal(reply.text, "up ready\n");
    },
  },
  {
    keys: ["agent.port"],
    change: (b, w) => set(b, "agent", { port: w.ports.agent2 }),
    check: async (w) => {
      assert.equal((await agentCheck(w.ports.agent2, "/primary\n")).text, "up ready\n");
    },
  },
  {
    keys: ["agent.check"],
    change: (b) => set(b, "agent", { check: "/replica" }),
    check: async (w) => {
      assert.equal((await agentCheck(w.ports.agent, "", { closeWrite: true })).text, "maint\n");
    },
  },
  {
    keys: ["agent.mismatch"],
    change: (b) => set(b, "agent", { mismatch: "drain" }),
    check: async (w) => {
      assert.equal((await agentCheck(w.ports.agent, "/replica\n")).text, "drain\n");
    },
  },
  {
    keys: ["dcs.patroni-config"],
    change: (b, w) => ({ ...b, dcs: { "patroni-config": patroniFile(w, "pg2") } }),
    check: async (w) => {
      await within(
        "the lock no longer this member's",
        async () => await dcsGauge(w, "leader_lock_held") === 0,
      );
      await within("the DCS read", async () => await dcsGauge(w, "up") === 1);
    },
  },
  {
    keys: ["dcs.type"],
    change: (b) => set(b, "dcs", { type: "etcd3" }), // the scope's keys are v2 keys
    check: async (w) => {
      await within(
        "no lock in the v3 keys",
        async () => await dcsGauge(w, "leader_lock_held") === 0,
      );
    },
  },
  {
    keys: ["dcs.hosts"],
    change: (b) => set(b, "dcs", { hosts: `127.0.0.1:${freePort()}` }),
    check: async (w) => {
      await within("the DCS out of reach", async () => await dcsGauge(w, "up") === 0);
    },
  },
  {
    keys: ["dcs.protocol"],
    change: (b) => set(b, "dcs", { protocol: "https", cacert: fixture("ca.pem") }),
    check: async (w) => {
      await within("https to a plain etcd fails", async () => await dcsGauge(w, "up") === 0);
    },
  },
  {
    keys: ["dcs.scope"],
    change: (b) => set(b, "dcs", { scope: "other" }),
    check: async (w) => {
      await within("pg2 leads that scope", async () => await dcsGauge(w, "leader_lock_held") === 0);
    },
  },
  {
    keys: ["dcs.namespace"],
    change: (b) => set(b, "dcs", { namespace: "/elsewhere/" }),
    check: async (w) => {
      await within("pg2 leads there", async () => await dcsGauge(w, "leader_lock_held") === 0);
    },
  },
  {
    keys: ["dcs.name"],
    change: (b) => set(b, "dcs", { name: "pg2" }),
    check: async (w) => {
      await within("pg2 holds no lock", async () => await dcsGauge(w, "leader_lock_held") === 0);
    },
  },
  {
    keys: ["dcs.username"],
    change: (b) => set(b, "dcs", { username: "nobody" }),
    check: async (w) => {
      await within("an unknown user is refused", async () => await dcsGauge(w, "up") === 0);
    },
  },
  {
    keys: ["dcs.password"],
    change: (b) => set(b, "dcs", { password: "wrong" }),
    check: async (w) => {
      await within("a wrong password is refused", async () => await dcsGauge(w, "up") === 0);
      assert.ok(w.lines().some((l) => l.includes("dcs.password: changed")));
      assert.ok(!w.lines().some((l) => l.includes("wrong")), "the password is never logged");
    },
  },
  {
    keys: ["dcs.cacert", "dcs.cert", "dcs.key"],
    change: (b, w) =>
      set(without(b, "dcs", ["username", "password"]), "dcs", {
        hosts: w.tlsEtcd.url,
        cacert: fixture("ca.pem"),
        cert: fixture("client.pem"),
        key: fixture("client.key"),
      }),
    check: async (w) => {
      await within(
        "the lock read over TLS",
        async () => await dcsGauge(w, "leader_lock_held") === 1,
      );
    },
  },
  {
    keys: ["dcs.margin"],
    change: (b) => set(b, "dcs", { margin: 60 }), // more than the lock's 30 s
    check: async (w) => {
      w.patroni.freeze();
      try {
        const res = await get(`http://127.0.0.1:${w.ports.frontend}/standby-leader`);
        assert.equal(res.status, 503);
        const primary = await get(`http://127.0.0.1:${w.ports.frontend}/master`);
        assert.notEqual(primary.cache, "DCS");
      } finally {
        w.patroni.thaw();
      }
    },
  },
  {
    keys: ["log-format"],
    change: (b) => ({ ...b, "log-format": "json" }),
    check: async (w) => {
      await get(`http://127.0.0.1:${w.ports.frontend}/health`);
      await w.glue.waitFor(/^\{"time":.*"msg":"request"/);
    },
  },
];

/** Patroni's own file for member `member` of scope pg on the plain etcd. */
function patroniFile(w: World, member: string): string {
  const file = Deno.makeTempFileSync({ prefix: "patroniglue-reload-", suffix: ".yml" });
  Deno.writeTextFileSync(
    file,
    `scope: pg\nname: ${member}\netcd:\n  host: 127.0.0.1:${w.etcd.port}\n  username: root\n  password: s3cret\n`,
  );
  return file;
}

Deno.test("reload: the cases cover every key of the schema, each once", () => {
  const covered = CASES.flatMap((c) => c.keys).sort();
  assert.deepEqual(covered, [...schemaKeys().keys()].sort());
});

/** Renews `holder`'s lock of `/<ns>/<scope>` (ttl 30) every 5 s until the returned stop is called. */
async function holdLock(etcd: Etcd, path: string, holder: string): Promise<() => void> {
  const put = () => etcd.v2("PUT", `${path}/leader?ttl=30`, { value: holder });
  await put();
  const timer = setInterval(() => put().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

async function seed(etcd: Etcd): Promise<(() => void)[]> {
  const member = JSON.stringify({ role: "master", state: "running", timeline: 1 });
  for (const path of ["/service/pg", "/service/other", "/elsewhere/pg"]) {
    await etcd.v2("PUT", `${path}/members/pg1`, { value: member });
    await etcd.v2("PUT", `${path}/config`, { value: '{"ttl":30,"loop_wait":10}' });
  }
  return [
    await holdLock(etcd, "/service/pg", "pg1"),
    await holdLock(etcd, "/service/other", "pg2"),
    await holdLock(etcd, "/elsewhere/pg", "pg2"),
  ];
}

/** A Patroni stand-in over HTTPS that answers only clients with a certificate signed by ca.pem. */
function clientCertServer(): Promise<https.Server> {
  const pem = (name: string) => Deno.readTextFileSync(fixture(name));
  const server = https.createServer({
    cert: pem("server.pem"),
    key: pem("server.key"),
    ca: pem("ca.pem"),
    requestCert: true,
    rejectUnauthorized: true,
  }, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"role":"master","state":"running"}');
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

Deno.test({
  name: `reload: every key, changed on SIGHUP, takes effect as declared${
    HAS_ETCD && HAS_OPENSSL ? "" : " (ignored: needs /usr/bin/etcd and openssl)"
  }`,
  ignore: !HAS_ETCD || !HAS_OPENSSL,
  async fn() {
    const pem = (name: string) => Deno.readTextFileSync(fixture(name));
    await using patroni = await FakePatroni.start();
    patroni.scope = "pg";
    await using replica = await FakePatroni.start({ role: "replica" });
    await using replicaElsewhere = await FakePatroni.start({
      role: "replica",
      hostname: "127.0.0.2",
      port: patroni.port,
    });
    await using tlsPatroni = await FakePatroni.start({
      tls: { cert: pem("server.pem"), key: pem("server.key") },
    });
    const certServer = await clientCertServer();
    await using etcd = await Etcd.start({ auth: "v2" });
    await using tlsEtcd = await Etcd.start({ tls: true });
    const stops = [...await seed(etcd), ...await seed(tlsEtcd)];
    const [frontend, frontend2, agent, agent2, metrics] = freePorts(5);
    const ports = { frontend, frontend2, agent, agent2, metrics };
    const base: Tree = {
      frontend: { host: "127.0.0.1", port: ports.frontend, logformat: "%a - %m %U" },
      backend: { host: "127.0.0.1", port: patroni.port, timeout: 1 },
      cache: { ttl: 1, interval: 0.25, "max-entries": 1000 },
      metrics: { enabled: true },
      agent: { port: ports.agent, check: "/primary", mismatch: "maint" },
      dcs: {
        type: "etcd",
        hosts: `127.0.0.1:${etcd.port}`,
        scope: "pg",
        name: "pg1",
        username: "root",
        password: "s3cret",
      },
      "log-format": "text",
    };
    const file = await Deno.makeTempFile({ prefix: "patroniglue-reload-", suffix: ".yml" });
    await Deno.writeTextFile(file, yaml(base));
    const glue = await GlueProcess.start(["-config", file, "-verbose"]);
    let mark = 0;
    const w: World = {
      glue,
      ports,
      patroni,
      replica,
      replicaElsewhere,
      tlsPatroni,
      clientCertPort: (certServer.address() as { port: number }).port,
      etcd,
      tlsEtcd,
      lines: () => glue.stderr.split("\n").slice(mark),
    };
    /** Writes `tree`, sends SIGHUP, and waits for the reload line after it. */
    const reloadWith = async (tree: Tree) => {
      await Deno.writeTextFile(file, yaml(tree));
      mark = glue.stderr.split("\n").length;
      Deno.kill(glue.pid, "SIGHUP");
      await within(
        "the reload line",
        () =>
          Promise.resolve(
            w.lines().some((l) => /(NOTICE |"msg":")(reloaded|reload refused)/.test(l)),
          ),
      );
      const refused = w.lines().find((l) => l.includes("reload refused"));
      assert.equal(refused, undefined, refused);
    };
    try {
      await within("the DCS lock read", async () => await dcsGauge(w, "leader_lock_held") === 1);
      for (const c of CASES) {
        try {
          await reloadWith(c.change(base, w));
          await c.check(w);
          await reloadWith(base);
        } catch (e) {
          throw new Error(`${c.keys.join(", ")}: ${(e as Error).message}\n${w.lines().join("\n")}`);
        }
      }
    } finally {
      for (const stop of stops) stop();
      await glue.stop();
      certServer.closeAllConnections?.();
      await new Promise((resolve) => certServer.close(resolve));
    }
  },
});
